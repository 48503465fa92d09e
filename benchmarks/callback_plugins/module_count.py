# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection's benchmarks: not a public API, may change without notice.
"""Count the tasks of a playbook run that ran a module on a managed host.

Enabled with ANSIBLE_CALLBACKS_ENABLED=module_count (and ANSIBLE_CALLBACK_PLUGINS pointing here);
writes JSON to $MODULE_COUNT_FILE when the playbook ends. A task counts once per host when it ran
(ok, changed or failed); skipped tasks and actions that run only on the controller (set_fact,
assert, debug, include_*/import_*, meta, fail) do not.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: module_count
type: aggregate
short_description: Count module runs on managed hosts
description:
  - Counts, per host and per action, the tasks that ran a module on a managed host, and writes them as JSON.
options:
  output:
    description: Where to write the counts.
    env:
      - name: MODULE_COUNT_FILE
    required: true
    type: path
"""

import json

from ansible.plugins.callback import CallbackBase

CONTROLLER_ONLY = {
    "set_fact", "assert", "debug", "fail", "meta", "include_tasks", "import_tasks", "include_role",
    "import_role", "include_vars", "add_host", "group_by", "set_stats", "validate_argument_spec",
}


def _short(action):
    return action.rsplit(".", 1)[-1]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_count"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self.hosts = {}

    def _record(self, result, status):
        action = result._task.action  # pylint: disable=protected-access
        if _short(action) in CONTROLLER_ONLY:
            return
        host = self.hosts.setdefault(result._host.get_name(), {"module_runs": 0, "changed": 0, "tasks": []})  # pylint: disable=protected-access
        host["module_runs"] += 1
        changed = bool(result._result.get("changed"))  # pylint: disable=protected-access
        host["changed"] += int(changed)
        host["tasks"].append({"task": result._task.get_name(), "action": action, "status": status,  # pylint: disable=protected-access
                              "changed": changed})

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_item_on_ok(self, result):
        pass  # the task's final result is counted once in v2_runner_on_ok

    def v2_playbook_on_stats(self, stats):
        path = self.get_option("output")
        with open(path, "w") as handle:
            json.dump({"hosts": self.hosts}, handle, indent=2, sort_keys=True)
            handle.write("\n")
