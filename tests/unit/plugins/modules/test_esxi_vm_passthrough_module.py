# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""esxi_vm_passthrough through main(): argument checks, and one run on a fake VM (pyVmomi's own
data objects for its devices and the spec; the calls to vSphere are faked)."""

from types import SimpleNamespace

import pytest
from pyVmomi import vim, vmodl

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
        self.target = SimpleNamespace(
            pciPassthrough=[SimpleNamespace(pciDevice=SimpleNamespace(id=A100, vendorId=4318, deviceId=0x20F1,
                                                                      deviceName="A100"), systemId="sys-1")],
            sharedGpuPassthroughTypes=[], dynamicPassthrough=[])
        self.environmentBrowser = SimpleNamespace(QueryConfigTarget=lambda host=None: self.target)
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
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, devices=[{"vendor_id": "10de", "device_id": "1eb8"}]))
    assert code == 0 and result["changed"] is True
    assert any("no host of VM vm1's cluster" in w for w in result["warnings"])
    backing = fake.specs[0].deviceChange[0].device.backing
    assert isinstance(backing, PT.DynamicBackingInfo) and backing.customLabel is None
    assert [(a.vendorId, a.deviceId) for a in backing.allowedDevice] == [(4318, 0x1EB8)]


def offer(*labels):
    """The cluster's config target lists a T4 with each hardware label (ESXi 7.0.2+: customLabel)."""
    return [vim.vm.DynamicPassthroughInfo(vendorId=0x10DE, deviceId=0x1EB8, vendorName="NVIDIA", deviceName="T4",
                                          customLabel=label) for label in labels]


def test_a_label_takes_the_device_with_that_hardware_label(fake, run_module):
    fake.target.dynamicPassthrough = offer(None, "t4")
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, devices=[{"vendor_id": "10de", "device_id": "1eb8",
                                                                       "label": "t4"}]))
    assert code == 0 and result["changed"] is True
    assert not any("no host of VM vm1's cluster" in w for w in result["warnings"])
    backing = fake.specs[0].deviceChange[0].device.backing
    assert backing.customLabel == "t4" and [(a.vendorId, a.deviceId) for a in backing.allowedDevice] == [(0x10DE, 0x1EB8)]


def test_a_label_no_host_has_is_refused_before_any_change(fake, run_module):
    fake.target.dynamicPassthrough = offer(None, "infer", "batch")
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, devices=[{"vendor_id": "10de", "device_id": "1eb8",
                                                                       "label": "t4"}]))
    assert code == 1 and result["changed"] is False and fake.specs == []
    assert "no host of VM vm1's cluster offers a 10de:1eb8 device with hardware label t4" in result["msg"]
    assert "labels offered for 10de:1eb8: batch, infer" in result["msg"]
    assert "passthrough.gpu.esxi_passthrough sets with its hardware_label option" in result["msg"]


def test_a_running_vm_with_its_devices_gets_only_the_lock(fake, run_module):
    present = dict(ARGS, devices=[{"id": A100}])
    run_module(esxi_vm_passthrough, present)
    fake.config.memoryReservationLockedToMax, fake.runtime.powerState = False, "poweredOn"
    code, check = run_module(esxi_vm_passthrough, dict(present, _ansible_check_mode=True, _ansible_diff=True))
    assert code == 0 and check["changed"] is True and len(fake.specs) == 1
    assert check["diff"]["after"]["memory_reservation_locked_to_max"] is True and check["added"] == []
    code, result = run_module(esxi_vm_passthrough, present)
    assert code == 0 and result["changed"] is True and result["memory_reservation_locked_to_max"] is True
    assert fake.specs[-1].deviceChange == [] and fake.specs[-1].memoryReservationLockedToMax is True
    code, again = run_module(esxi_vm_passthrough, present)
    assert code == 0 and again["changed"] is False and len(fake.specs) == 2


def gone(*args, **kwargs):
    raise vmodl.fault.ManagedObjectNotFound(msg="The object has already been deleted")


@pytest.mark.parametrize("where", ["runtime", "config", "target", "reconfigure", "read back"])
def test_a_fault_on_any_read_or_call_is_one_failure(fake, run_module, monkeypatch, where):
    if where in ("runtime", "config"):
        monkeypatch.setattr(FakeVm, where, property(gone), raising=False)
    elif where == "target":
        fake.environmentBrowser = SimpleNamespace(QueryConfigTarget=gone)
    elif where == "reconfigure":
        fake.ReconfigVM_Task = gone
    else:  # the VM is gone right after the reconfigure
        def vanish(task, what):
            monkeypatch.setattr(FakeVm, "config", property(gone), raising=False)
        monkeypatch.setattr(_vsphere, "wait", vanish)
    code, result = run_module(esxi_vm_passthrough, dict(ARGS, devices=[{"id": A100}]))
    assert code == 1 and "failed: vmodl.fault.ManagedObjectNotFound: The object has already been deleted" in result["msg"]
    assert result["msg"].startswith({"reconfigure": "reconfiguring VM vm1", "read back": "reading VM vm1 back",
                                     "target": "reading the config target of host esx1"}.get(where, "reading VM vm1"))


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
