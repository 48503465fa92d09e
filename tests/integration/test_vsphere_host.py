# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esxi_passthrough and esxi_passthrough_info through ansible-playbook against the GPU-aware
vSphere simulator (tests/vcsim), read back with pyVmomi.

The playbook side is tests/integration/targets/esxi_passthrough (one tasks file per phase, with
its own asserts on what the modules return); here each phase runs as users run it, and the host is
then checked independently of our code, with plain pyVmomi and the simulator's request log.
One simulator for the file (the ``vcsim`` fixture); each test uses its own host of it.
"""

import json
import os

import pytest
from pyVim.connect import Disconnect
from pyVmomi import vim

from ansible_collections.passthrough.gpu.plugins.module_utils import _vsphere
from helpers import REPO, ansible_module, run_playbook
from vcsim import Vcsim, find

A100, T4, INTEL = "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"
TARGETS = os.path.join(REPO, "tests", "integration", "targets")
MODULE = "passthrough.gpu.esxi_passthrough"


def run_phases(tmp_path, phases, env, **variables):
    """Run tasks files of the esxi_passthrough target in one playbook; fail with its output."""
    play = [{"hosts": "localhost", "gather_facts": False, "vars": variables,
             "tasks": [{"name": "phase %s" % phase, "ansible.builtin.include_role": {
                 "name": "esxi_passthrough", "tasks_from": phase}} for phase in phases]}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play))  # JSON is YAML
    proc = run_playbook(str(playbook), extra_args=["--diff"], timeout=300,  # implicit localhost: this venv
                        env=dict(env, ANSIBLE_ROLES_PATH=TARGETS))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "failed=0" in proc.stdout, output[-8000:]
    return output


class Host:
    """The simulator's host seen through plain pyVmomi (its own session)."""

    def __init__(self, sim, name):
        self.si = sim.connect()
        self.host = find(self.si, vim.HostSystem, name)

    def passthru(self):
        return {i.id: (i.passthruEnabled, i.passthruActive)
                for i in self.host.configManager.pciPassthruSystem.pciPassthruInfo}

    def close(self):
        Disconnect(self.si)


@pytest.fixture
def pyvmomi(vcsim):
    opened = []

    def open_host(name):
        opened.append(Host(vcsim, name))
        return opened[-1]
    yield open_host
    for host in opened:
        host.close()


def test_enable_without_apply_now_then_reboot_makes_them_active(vcsim, pyvmomi, tmp_path):
    host = pyvmomi("DC0_H0")
    boot = host.host.runtime.bootTime
    start = len(vcsim.requests())
    run_phases(tmp_path, ["enable"], vcsim.env(), esxi_passthrough_host="DC0_H0")
    requests = vcsim.requests()[start:]
    assert requests.count("UpdatePassthruConfig") == 1  # one batch, only in the run that changed
    state = host.passthru()
    assert state[A100] == state[T4] == (True, False) and state[INTEL] == (False, False)
    assert host.host.summary.rebootRequired and host.host.runtime.bootTime == boot

    start = len(vcsim.requests())
    output = run_phases(tmp_path, ["reboot", "info"], vcsim.env(), esxi_passthrough_host="DC0_H0")
    assert "[WARNING]" not in output, output
    requests = vcsim.requests()[start:]
    assert [r for r in requests if r.endswith("MaintenanceMode_Task") or r == "RebootHost_Task"] == [
        "EnterMaintenanceMode_Task", "RebootHost_Task", "ExitMaintenanceMode_Task"]
    assert "UpdatePassthruConfig" not in requests
    state = host.passthru()
    assert state[A100] == state[T4] == (True, True) and state[INTEL] == (False, False)
    assert host.host.runtime.bootTime > boot
    assert not host.host.runtime.inMaintenanceMode and not host.host.summary.rebootRequired


def test_graphics_through_the_action_group(vcsim, pyvmomi, tmp_path):
    env = vcsim.env()
    connection = {"hostname": env.pop("VMWARE_HOST"), "port": int(env.pop("VMWARE_PORT")),
                  "username": env.pop("VMWARE_USER"), "password": env.pop("VMWARE_PASSWORD"),
                  "validate_certs": env.pop("VMWARE_VALIDATE_CERTS") == "true"}
    # the parent's environment must not hand the connection over either
    assert not any(k.startswith("VMWARE_") for k in os.environ)
    host = pyvmomi("DC0_C0_H0")
    boot = host.host.runtime.bootTime
    start = len(vcsim.requests())
    run_phases(tmp_path, ["graphics"], {}, esxi_passthrough_host="DC0_C0_H0", esxi_passthrough_connection=connection)
    config = host.host.configManager.graphicsManager.graphicsConfig
    assert (config.hostDefaultGraphicsType, config.sharedPassthruAssignmentPolicy) == ("sharedDirect", "consolidation")
    assert {g.pciId: g.graphicsType for g in host.host.configManager.graphicsManager.graphicsInfo}[T4] == "sharedDirect"
    requests = vcsim.requests()[start:]
    assert requests.count("UpdateGraphicsConfig") == 1 and requests.count("RebootHost_Task") == 1
    assert host.host.runtime.bootTime > boot and not host.host.runtime.inMaintenanceMode
    assert pyvmomi("DC0_H0").host.configManager.graphicsManager.graphicsConfig.hostDefaultGraphicsType == "shared"


def test_apply_now_the_host_ignores_ends_in_a_reboot(tmp_path):
    with Vcsim(args=["-no-apply-now", T4]) as sim:
        run_phases(tmp_path, ["apply_now"], sim.env(), esxi_passthrough_host="DC0_H0")
        requests = sim.requests()
        assert requests.count("UpdatePassthruConfig") == 3  # sent by the runs that found it not active
        assert requests.count("RebootHost_Task") == 1


def test_hardware_label_in_the_same_batch_and_in_the_config_target(vcsim, pyvmomi, tmp_path):
    host = pyvmomi("DC0_C0_H1")
    start = len(vcsim.requests())
    run_phases(tmp_path, ["label"], vcsim.env(), esxi_passthrough_host="DC0_C0_H1")
    assert vcsim.requests()[start:].count("UpdatePassthruConfig") == 1
    assert host.passthru()[T4] == (True, True)
    target = host.host.parent.environmentBrowser.QueryConfigTarget(host=host.host)
    assert [(d.deviceId, d.customLabel) for d in target.dynamicPassthrough] == [(0x1EB8, "t4-inference")]


def test_find_vm_refuses_a_uuid_that_clones_share(vcsim, pyvmomi):
    si = pyvmomi("DC0_H0").si
    content = si.RetrieveContent()
    first, second = find(si, vim.VirtualMachine, "DC0_C0_RP0_VM0"), find(si, vim.VirtualMachine, "DC0_C0_RP0_VM1")
    uuid = first.config.uuid
    assert _vsphere.find_vm(content, uuid=uuid) == first
    task = second.ReconfigVM_Task(vim.vm.ConfigSpec(uuid=uuid))
    _vsphere.wait(task, "giving the clone its source's uuid")
    with pytest.raises(_vsphere.VsphereError, match="^2 virtual machines have the BIOS uuid %s " % uuid) as err:
        _vsphere.find_vm(content, uuid=uuid)
    assert "DC0_C0_RP0_VM0" in str(err.value) and "DC0_C0_RP0_VM1" in str(err.value)


def test_refusals_send_no_change(vcsim, pyvmomi, tmp_path):
    host = pyvmomi("DC0_C0_H1")
    before = host.passthru()
    start = len(vcsim.requests())
    run_phases(tmp_path, ["refusals"], vcsim.env(), esxi_passthrough_host="DC0_C0_H1")
    requests = vcsim.requests()[start:]
    assert "UpdatePassthruConfig" not in requests and "UpdateGraphicsConfig" not in requests
    assert requests.count("Login") == 5  # five runs: the bad password reached the simulator and was refused
    assert host.passthru() == before


def test_untrusted_certificate_is_refused_with_validate_certs_left_at_its_default():
    # 127.0.0.2: pyVmomi itself never verifies 127.0.0.1 without a context (tests/vcsim/README.md)
    with Vcsim(ip="127.0.0.2") as sim:
        env = sim.env()
        del env["VMWARE_VALIDATE_CERTS"]
        result = ansible_module("localhost", MODULE, {"esxi_hostname": "DC0_H0", "devices": [A100]},
                                env=env, may_fail=True)
        assert result["failed"] is True
        assert result["msg"].startswith("Unable to connect to the vCenter or ESXi API at 127.0.0.2")
        assert "CERTIFICATE_VERIFY_FAILED" in result["msg"] and "self-signed certificate" in result["msg"]
        assert "Login" not in sim.requests()


def test_requests_do_not_grow_with_the_devices(vcsim):
    """One change, then three (every capable device of the host; the A100 again, to apply it now) in
    one batch: the same requests. benchmarks/esxi_passthrough_requests.py measures it on fresh simulators."""
    counts = []
    for devices, apply_now in (([A100], False), ([A100, T4, INTEL], True)):
        start = len(vcsim.requests())
        result = ansible_module("localhost", MODULE, {"esxi_hostname": "DC0_C0_H2", "devices": devices,
                                                      "apply_now": apply_now}, env=vcsim.env())
        assert result["changed"] and [d["active"] for d in result["devices"]] == [apply_now] * len(devices)
        requests = vcsim.requests()[start:]
        assert requests.count("UpdatePassthruConfig") == 1
        counts.append(len(requests))
    assert counts[0] == counts[1], counts
