# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ansible for real, from the CLI as users do."""

import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


def ansible_env(**extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra)
    return env


def ansible_module(host, module, args="", inventory=None, env=None, timeout=600):
    """Run ``ansible HOST -m MODULE -a ARGS`` and return that host's result (plus ``_stderr``)."""
    argv = [os.path.join(BIN, "ansible"), host, "--one-line", "-m", module]
    if args:
        argv += ["-a", args]
    if inventory:
        argv += ["-i", inventory]
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)
    # --one-line prints "HOST | STATUS => {json}" per host.
    prefix = "%s | " % host
    lines = [line for line in proc.stdout.splitlines() if line.startswith(prefix)]
    assert proc.returncode == 0 and lines, "ansible rc %d:\n%s\n%s" % (
        proc.returncode, proc.stdout[:4000], proc.stderr[:4000])
    result = json.loads(lines[0].split(" => ", 1)[1])
    result["_stderr"] = proc.stderr  # where ansible shows the module's warnings
    return result
