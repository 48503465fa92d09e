# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`molecule test` of one of the collection's scenarios (extensions/molecule/), as CI runs it.

Molecule runs from the repository root, where it finds galaxy.yml and so takes its scenarios from
extensions/molecule/. Each scenario's create/destroy playbooks start and stop their own lab VM or
simulator (own run dir in molecule's ephemeral directory, own free port), so scenarios run beside
the other tests; each has its own test file so that pytest-xdist (--dist loadfile) can run two at
once. Output is captured and shown only on failure, so the suite's last line stays pytest's summary.
"""

import os
import subprocess

import pytest

from helpers import BIN, REPO, ansible_env

# create (a VM boot: 25-90 s, far more on a loaded machine) + converge (with a reboot) + idempotence
# + verify + destroy.
TIMEOUT = 2400


def molecule_test(scenario):
    molecule = os.path.join(BIN, "molecule")
    assert os.path.exists(molecule), "molecule is not installed: run tools/bootstrap.sh"
    # ANSIBLE_CONFIG would point molecule's ansible at the repository's inventory (the lab);
    # molecule writes its own ansible.cfg and inventory for the scenario.
    env = ansible_env(ANSIBLE_FORCE_COLOR="0", NO_COLOR="1", PY_COLORS="0")
    env.pop("ANSIBLE_CONFIG", None)
    try:
        proc = subprocess.run([molecule, "test", "--scenario-name", scenario], cwd=REPO, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        # The VM is left to molecule's destroy playbook; run it so no QEMU outlives the test.
        subprocess.run([molecule, "destroy", "--scenario-name", scenario], cwd=REPO, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
        out = exc.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        pytest.fail("molecule test -s %s did not finish in %ds:\n%s" % (scenario, TIMEOUT, out[-6000:]))
    assert proc.returncode == 0, "molecule test -s %s rc %d:\n%s\n%s" % (
        scenario, proc.returncode, proc.stdout[-10000:], proc.stderr[-4000:])
    return proc.stdout
