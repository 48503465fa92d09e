# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The vSphere connection of every ESXi module: a wrong password and an untrusted certificate are
clear errors that change nothing, and a trusted certificate works with validate_certs at its default.

The simulator listens on 127.0.0.2: pyVmomi skips certificate checks for 127.0.0.1 when it is given
no SSL context (tests/vcsim/README.md), so a test there could pass without any check at all.
"""

import pytest

from helpers import ansible_module
from vcsim import Vcsim  # tests/vcsim, on sys.path through conftest.py

A100 = "0000:3b:00.0"
# Arguments that would change something (or read, for the info module) once logged in.
MODULES = {
    "esxi_passthrough": {"esxi_hostname": "DC0_H0", "devices": [A100]},
    "esxi_passthrough_info": {"esxi_hostname": "DC0_H0"},
    "vm_mmio": {"vm_name": "DC0_H0_VM0", "rule": "count", "gpu_count": 1},
    "esxi_vm_passthrough": {"vm_name": "DC0_H0_VM0", "devices": [{"id": A100}]},
}
CHANGES = ("UpdatePassthruConfig", "UpdateGraphicsConfig", "ReconfigVM_Task", "PowerOnVM_Task",
           "PowerOffVM_Task", "ShutdownGuest", "RebootHost_Task")


@pytest.fixture(scope="module")
def sim():
    with Vcsim(ip="127.0.0.2") as simulator:
        yield simulator


def run(sim, module, env):
    return ansible_module("localhost", "passthrough.gpu." + module, MODULES[module], env=env, may_fail=True)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_wrong_password(sim, module):
    env = dict(sim.env(), VMWARE_PASSWORD="not-the-password")
    start = len(sim.requests())
    result = run(sim, module, env)
    assert result["failed"] is True
    assert result["msg"].startswith("Unable to log on to the vCenter or ESXi API at 127.0.0.2")
    assert "as %s" % sim.user in result["msg"]
    assert "not-the-password" not in result["_output"]
    requests = sim.requests()[start:]
    assert "Login" in requests and not set(CHANGES) & set(requests)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_untrusted_certificate_with_validate_certs_at_its_default(sim, module):
    env = sim.env()
    del env["VMWARE_VALIDATE_CERTS"]
    start = len(sim.requests())
    result = run(sim, module, env)
    assert result["failed"] is True
    assert "CERTIFICATE_VERIFY_FAILED" in result["msg"], result["msg"]
    assert sim.requests()[start:] == []  # nothing reached the API, not even a login


def test_trusted_certificate_with_validate_certs_at_its_default(sim):
    env = sim.env()
    del env["VMWARE_VALIDATE_CERTS"]
    env["SSL_CERT_FILE"] = sim.cert_file  # what an admin does with a private CA
    result = run(sim, "esxi_passthrough_info", env)
    assert result.get("failed") is not True, result.get("msg")
    assert A100 in [d["id"] for d in result["passthrough"]["devices"]]
