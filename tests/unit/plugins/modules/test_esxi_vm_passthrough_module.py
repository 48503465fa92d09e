# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esxi_vm_passthrough through main(): argument checks, and one run on a fake VM (pyVmomi's own
data objects for its devices and the spec; the calls to vSphere are faked)."""

from types import SimpleNamespace

import pytest
from pyVmomi import vim

from ansible_collections.passthrough.gpu.plugins.module_utils import _vsphere
from ansible_collections.passthrough.gpu.plugins.modules import esxi_vm_passthrough

PT = vim.vm.device.VirtualPCIPassthrough
A100 = "0000:3b:00.0"
ARGS = {"hostname": "vc", "username": "u", "password": "vc-secret", "vm_name": "vm1"}


class FakeVm:
    def __init__(self):
        self.name = "vm1"
        self.config = SimpleNamespace(version="vmx-19", memoryReservationLockedToMax=False,
                                      hardware=SimpleNamespace(device=[vim.vm.device.VirtualE1000(key=4000)]))
        self.runtime = SimpleNamespace(powerState="poweredOff", host=SimpleNamespace(name="esx1"))
        target = SimpleNamespace(
            pciPassthrough=[SimpleNamespace(pciDevice=SimpleNamespace(id=A100, vendorId=4318, deviceId=0x20F1,
                                                                      deviceName="A100"), systemId="sys-1")],
            sharedGpuPassthroughTypes=[], dynamicPassthrough=[])
        self.environmentBrowser = SimpleNamespace(QueryConfigTarget=lambda host=None: target)
        self.specs = []

    def ReconfigVM_Task(self, spec):  # pylint: disable=invalid-name
        self.specs.append(spec)
        devices = self.config.hardware.device
        for i, change in enumerate(spec.deviceChange):
            if change.operation == "add":
                change.device.key = 9000 + len(devices) + i
                devices.append(change.device)
            else:
                devices.remove(change.device)
        if spec.memoryReservationLockedToMax:
            self.config.memoryReservationLockedToMax = True
        return "task"


@pytest.fixture
def fake(monkeypatch):
    vm = FakeVm()
    monkeypatch.setattr(_vsphere, "connect", lambda params: "content")
    monkeypatch.setattr(_vsphere, "find_vm", lambda content, name, uuid: vm)
    monkeypatch.setattr(_vsphere, "wait", lambda task, what: None)
    return vm


def test_add_then_remove_a_static_device(fake, run_module):
    present = dict(ARGS, devices=[{"id": "3b:00.0"}])
    changed = []
    for check in (True, False, True, False):
        code, result = run_module(esxi_vm_passthrough, dict(present, _ansible_check_mode=check))
        assert code == 0, result
        changed.append(result["changed"])
    assert changed == [True, True, False, False] and len(fake.specs) == 1
    [spec] = fake.specs
    assert spec.memoryReservationLockedToMax is True
    [add] = spec.deviceChange
    backing = add.device.backing
    assert add.operation == "add" and isinstance(backing, PT.DeviceBackingInfo)
    assert (backing.id, backing.deviceId, backing.vendorId, backing.systemId) == (A100, "20f1", 4318, "sys-1")
    assert [d["id"] for d in result["devices"]] == [A100]

    code, removed = run_module(esxi_vm_passthrough, dict(present, state="absent"))
    assert code == 0 and removed["changed"] is True and [d["id"] for d in removed["removed"]] == [A100]
    assert fake.specs[-1].deviceChange[0].operation == "remove" and fake.specs[-1].memoryReservationLockedToMax is None
    assert [type(d) for d in fake.config.hardware.device] == [vim.vm.device.VirtualE1000]  # the NIC stays


def test_dynamic_backing_is_built_with_allowed_devices(fake, run_module):
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, devices=[{"vendor_id": "10de", "device_id": "1eb8",
                                                                       "label": "t4"}]))
    assert code == 0 and result["changed"] is True
    assert any("no host of VM vm1's cluster" in w for w in result["warnings"])
    backing = fake.specs[0].deviceChange[0].device.backing
    assert isinstance(backing, PT.DynamicBackingInfo) and backing.customLabel == "t4"
    assert [(a.vendorId, a.deviceId) for a in backing.allowedDevice] == [(0x10DE, 0x1EB8)]


@pytest.mark.parametrize("args, message", [
    ({"devices": [{"id": A100, "vendor_id": "10de", "device_id": "1eb8"}]}, "mutually exclusive: id|vendor_id"),
    ({"devices": [{"vendor_id": "10de"}]}, "parameters are required together: vendor_id, device_id"),
    ({"devices": [{"label": "x"}]}, "one of the following is required: id, vendor_id"),
    ({}, "one of the following is required: devices, vgpu_profile"),
    ({"devices": [{"id": "nope"}]}, "id 'nope' is not a PCI id"),
])
def test_refused_before_connecting(run_module, monkeypatch, args, message):
    monkeypatch.setattr(_vsphere, "connect", lambda params: pytest.fail("connected"))
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, **args))
    assert code == 1 and message in result["msg"]


def test_a_vsphere_error_is_one_failure(run_module, monkeypatch):
    def refuse(params):
        raise _vsphere.VsphereError("cannot complete login due to an incorrect user name or password")
    monkeypatch.setattr(_vsphere, "connect", refuse)
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, vgpu_profile="grid_t4-2q"))
    assert code == 1 and result["changed"] is False and "incorrect user name" in result["msg"]
