# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`molecule test` of the collection's scenarios (extensions/molecule/), as CI runs it.

Molecule runs from the repository root, where it finds galaxy.yml and so takes its scenarios from
extensions/molecule/. Its create/destroy playbooks start and stop their own lab VM (own run dir
in molecule's ephemeral directory, own free port), so this runs beside the other lab tests. Its
output is captured and shown only when it fails, so the suite's last line stays pytest's summary.
"""

import os
import subprocess

import pytest

from helpers import BIN, REPO, ansible_env

# create (boot, 25-90 s depending on the host's load) + converge + idempotence + verify + destroy.
TIMEOUT = 1800


@pytest.mark.parametrize("scenario", ["default"])
def test_molecule_scenario(scenario):
    molecule = os.path.join(BIN, "molecule")
    assert os.path.exists(molecule), "molecule is not installed: run tools/bootstrap.sh"
    # ANSIBLE_CONFIG would point molecule's ansible at the repository's inventory (the default lab
    # on port 2222); molecule writes its own ansible.cfg and inventory for the scenario.
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
        pytest.fail("molecule test did not finish in %ds:\n%s" % (TIMEOUT, out[-6000:]))
    assert proc.returncode == 0, "molecule test rc %d:\n%s\n%s" % (
        proc.returncode, proc.stdout[-8000:], proc.stderr[-4000:])
