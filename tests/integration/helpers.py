# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run modules for real through ansible-playbook, as users do."""

import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)
LAB_INVENTORY = os.path.join(REPO, "inventory", "lab.yml")


def ansible_env(**extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra)
    return env


def run_playbook(playbook, inventory=None, env=None, extra_args=(), timeout=900):
    """``ansible-playbook`` with the repo's config; returns the finished process."""
    argv = [os.path.join(BIN, "ansible-playbook"), playbook] + list(extra_args)
    if inventory:
        argv += ["-i", inventory]
    return subprocess.run(argv, cwd=REPO, env=ansible_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)


def ansible_module(host, module, args=None, inventory=None, env=None, timeout=600, may_fail=False,
                   task=None):
    """Run one module on one host and return its registered result, plus ``_output``.

    ``_output`` is what ansible printed (warnings included), for tests of what users see.
    With ``may_fail`` a failing module is a result (``failed``, ``msg``), not a test error.
    ``task`` adds task keywords, e.g. ``{"check_mode": True, "diff": True}``.
    """
    with tempfile.TemporaryDirectory() as workdir:
        result_file = os.path.join(workdir, "result.json")
        play = [{
            "hosts": host, "gather_facts": False,
            "tasks": [
                dict({"name": "module under test", module: args or {}, "register": "result",
                      "ignore_errors": may_fail}, **(task or {})),
                {"name": "keep the result", "delegate_to": "localhost",
                 "ansible.builtin.copy": {"content": "{{ result | to_json }}", "dest": result_file}},
            ],
        }]
        playbook = os.path.join(workdir, "play.yml")
        with open(playbook, "w") as handle:
            json.dump(play, handle)  # JSON is YAML
        proc = run_playbook(playbook, inventory=inventory or (None if host == "localhost" else LAB_INVENTORY),
                            env=env, timeout=timeout)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0 and os.path.exists(result_file), "ansible-playbook rc %d:\n%s" % (
            proc.returncode, output[-6000:])
        with open(result_file) as handle:
            result = json.load(handle)
    result["_output"] = output
    return result


TARGET_PLAY = """- hosts: lab
  gather_facts: false
  tasks:
    - name: Run the {target} target
      ansible.builtin.include_role:
        name: {target}
"""


def run_target(lab, target, tmp_path, timeout=1800):
    """Run an integration target (tests/integration/targets/<target>) on the lab VM with --diff."""
    playbook = tmp_path / ("%s.yml" % target)
    playbook.write_text(TARGET_PLAY.format(target=target))
    started = time.monotonic()
    proc = run_playbook(str(playbook), inventory=LAB_INVENTORY, timeout=timeout, extra_args=["--diff"],
                        env=dict(lab.env, ANSIBLE_ROLES_PATH=os.path.join(REPO, "tests", "integration", "targets")))
    elapsed = time.monotonic() - started
    (tmp_path / ("%s.log" % target)).write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, "target %s failed (rc %d) after %.0fs:\n%s\n%s\nserial console:\n%s" % (
        target, proc.returncode, elapsed, proc.stdout[-8000:], proc.stderr[-3000:], lab.serial_tail())
    assert "failed=0" in proc.stdout
    print("target %s: %.0f s" % (target, elapsed))
    return elapsed
