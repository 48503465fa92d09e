# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_mmio end to end on a fake VM: the vSphere calls are the only thing faked."""

from types import SimpleNamespace

import pytest
from pyVmomi import vmodl

from ansible_collections.passthrough.gpu.plugins.module_utils import _vm_mmio, _vsphere
from ansible_collections.passthrough.gpu.plugins.modules import vm_mmio


class FakeVm:
    """Just enough of a VirtualMachine: reconfigure applies the spec, power calls flip the state."""

    def __init__(self, power="poweredOff", shuts_down=True):
        self.name = "vm1"
        self.config = SimpleNamespace(firmware="bios", memoryReservationLockedToMax=False, extraConfig=[])
        self.runtime = SimpleNamespace(powerState=power)
        self.shuts_down = shuts_down
        self.calls = []

    def ShutdownGuest(self):  # pylint: disable=invalid-name
        self.calls.append("ShutdownGuest")
        if self.shuts_down:
            self.runtime.powerState = "poweredOff"

    def ReconfigVM_Task(self, spec):  # pylint: disable=invalid-name
        self.calls.append("ReconfigVM_Task")
        assert self.runtime.powerState == "poweredOff"
        if spec.firmware:
            self.config.firmware = spec.firmware
        if spec.memoryReservationLockedToMax is not None:
            self.config.memoryReservationLockedToMax = spec.memoryReservationLockedToMax
        self.config.extraConfig += list(spec.extraConfig)  # appends, as vcsim does
        return "task"

    def PowerOnVM_Task(self):  # pylint: disable=invalid-name
        self.calls.append("PowerOnVM_Task")
        self.runtime.powerState = "poweredOn"
        return "task"


@pytest.fixture
def fake(monkeypatch):
    vm = FakeVm()
    monkeypatch.setattr(_vsphere, "connect", lambda params: "content")
    monkeypatch.setattr(_vsphere, "find_vm", lambda content, name, uuid: vm)
    monkeypatch.setattr(_vsphere, "wait", lambda task, what: None)
    monkeypatch.setattr(_vm_mmio, "POLL_SECONDS", 0.01)
    return vm


ARGS = {"hostname": "vc", "username": "u", "password": "vc-secret", "vm_name": "vm1", "gpu_count": 2}


def test_check_apply_check_apply(fake, run_module):
    results = []
    for check in (True, False, True, False):
        code, result = run_module(vm_mmio, dict(ARGS, _ansible_check_mode=check, _ansible_diff=True))
        assert code == 0
        results.append(result)
    assert [r["changed"] for r in results] == [True, True, False, False]
    assert fake.calls == ["ReconfigVM_Task"]
    assert results[0]["size_gb"] == 64 and results[0]["rule"] == "count" and results[0]["ovmf_x_pcimmio64mb"] == 65536
    assert results[0]["diff"]["before"]["firmware"] == "bios" and results[0]["diff"]["after"]["firmware"] == "efi"
    assert any("BIOS to EFI" in w for w in results[1]["warnings"])
    assert results[3]["changes"] == [] and results[3]["settings"]["pciPassthru.64bitMMIOSizeGB"] == "64"


def test_a_new_size_is_one_change(fake, run_module):
    run_module(vm_mmio, ARGS)
    code, result = run_module(vm_mmio, dict(ARGS, gpu_count=4))
    assert code == 0 and [c["setting"] for c in result["changes"]] == ["pciPassthru.64bitMMIOSizeGB"]
    assert result["changes"][0]["before"] == "64" and result["changes"][0]["after"] == "128"


def test_powered_on_is_refused_without_power_cycle(fake, run_module):
    fake.runtime.powerState = "poweredOn"
    code, result = run_module(vm_mmio, ARGS)
    assert code == 1 and result["changed"] is False and "power_cycle=true" in result["msg"]
    assert fake.calls == []


def test_power_cycle_shuts_down_reconfigures_and_powers_on(fake, run_module):
    fake.runtime.powerState = "poweredOn"
    code, check = run_module(vm_mmio, dict(ARGS, power_cycle=True, _ansible_check_mode=True))
    assert code == 0 and check["power_cycled"] is True and fake.calls == []
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True))
    assert code == 0 and result["changed"] is True and result["power_cycled"] is True
    assert fake.calls == ["ShutdownGuest", "ReconfigVM_Task", "PowerOnVM_Task"]
    code, again = run_module(vm_mmio, dict(ARGS, power_cycle=True))
    assert code == 0 and again["changed"] is False and again["power_cycled"] is False and len(fake.calls) == 3


def test_a_guest_that_does_not_shut_down_is_not_reconfigured(fake, run_module, monkeypatch):
    fake.runtime.powerState, fake.shuts_down = "poweredOn", False
    clock = [0.0]  # a clock that moves only when the module sleeps: no real waiting
    monkeypatch.setattr(_vm_mmio, "time", SimpleNamespace(
        monotonic=lambda: clock[0], sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds)))
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True, shutdown_timeout=5))
    assert code == 1 and result["changed"] is True  # the shutdown request was sent
    assert "did not shut down within 5 s" in result["msg"] and fake.calls == ["ShutdownGuest"]


def test_a_shutdown_timeout_below_one_second_is_refused_before_the_shutdown(fake, run_module):
    fake.runtime.powerState = "poweredOn"
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True, shutdown_timeout=0))
    assert code == 1 and result["changed"] is False and fake.calls == []
    assert result["msg"] == "shutdown_timeout must be at least 1 second, got 0; nothing was changed"


def test_a_failed_reconfigure_powers_the_guest_on_again(fake, run_module, monkeypatch):
    fake.runtime.powerState = "poweredOn"

    def refuse(task, what):
        if fake.calls[-1] == "ReconfigVM_Task":
            raise _vsphere.VsphereError("%s failed: InvalidState" % what)
    monkeypatch.setattr(_vsphere, "wait", refuse)
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True))
    assert code == 1 and result["changed"] is True
    assert fake.calls == ["ShutdownGuest", "ReconfigVM_Task", "PowerOnVM_Task"]
    assert "reconfiguring VM vm1 failed: InvalidState" in result["msg"] and "powered on again, unchanged" in result["msg"]


def denied():
    return vmodl.fault.ManagedObjectNotFound(msg="The object has already been deleted")


def test_a_fault_while_waiting_for_the_shutdown_is_one_failure(fake, run_module):
    class Runtime:
        """Running; once the guest was asked to shut down, the VM is gone (deleted meanwhile)."""

        @property
        def powerState(self):  # pylint: disable=invalid-name
            if "ShutdownGuest" in fake.calls:
                raise denied()
            return "poweredOn"

    fake.runtime, fake.shuts_down = Runtime(), False
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True))
    assert code == 1 and result["changed"] is True and fake.calls == ["ShutdownGuest"]
    assert result["msg"] == ("the guest of VM vm1 was asked to shut down, but reading the power state of VM vm1 "
                             "failed: vmodl.fault.ManagedObjectNotFound: The object has already been deleted; "
                             "nothing was reconfigured")


@pytest.mark.parametrize("where", ["config", "ShutdownGuest", "ReconfigVM_Task", "PowerOnVM_Task"])
def test_a_fault_on_any_other_read_or_call_is_one_failure(fake, run_module, monkeypatch, where):
    def fail(*args):
        raise denied()
    fake.runtime.powerState = "poweredOn"
    if where == "config":
        monkeypatch.setattr(FakeVm, "config", property(lambda vm: fail()), raising=False)
    else:
        monkeypatch.setattr(fake, where, fail)
    code, result = run_module(vm_mmio, dict(ARGS, power_cycle=True))
    assert code == 1 and "failed: vmodl.fault.ManagedObjectNotFound: The object has already been deleted" in result["msg"]
    # touched once the guest was shut down; a refused ShutdownGuest did nothing
    assert result["changed"] is (where in ("ReconfigVM_Task", "PowerOnVM_Task"))
    assert result["msg"].startswith({"config": "reading VM vm1", "ShutdownGuest": "shutting down the guest",
                                     "ReconfigVM_Task": "reconfiguring VM vm1",
                                     "PowerOnVM_Task": "VM vm1 was reconfigured, but powering VM vm1 on"}[where])


@pytest.mark.parametrize("args, message", [
    ({"vm_uuid": "x"}, "mutually exclusive"),
    ({"vm_name": "drop"}, "one of the following is required"),
    ({"rule": "bars"}, "rule bars needs bar_sizes"),
    ({"bar_sizes": ["64G", "3G"]}, "'3G' is not a power of two"),
])
def test_refused_before_connecting(run_module, monkeypatch, args, message):
    monkeypatch.setattr(_vsphere, "connect", lambda params: pytest.fail("connected"))
    args = dict((k, v) for k, v in dict(ARGS, **args).items() if v != "drop")
    code, result = run_module(vm_mmio, args)
    assert code == 1 and message in result["msg"]


def test_a_connection_error_is_one_failure(run_module, monkeypatch):
    for name in ("VMWARE_HOST", "VMWARE_USER", "VMWARE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    code, result = run_module(vm_mmio, {"vm_name": "vm1", "gpu_count": 1, "username": "u", "password": "vc-secret"})
    assert code == 1 and result["changed"] is False and "hostname" in result["msg"].lower()
