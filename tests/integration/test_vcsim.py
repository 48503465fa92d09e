# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU-aware vSphere simulator (tests/vcsim), through real pyVmomi as the ESXi modules use it.

A fresh simulator per test (about 0.1 s to start): no test depends on another's host state.
The default inventory is a vCenter with hosts DC0_H0 (standalone, VMs DC0_H0_VM0/1) and
DC0_C0_H0..2 (cluster DC0_C0).
"""

import os
import ssl

import pytest
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim, vmodl

from vcsim import Vcsim, find  # tests/vcsim, on sys.path through conftest.py

A100, T4, INTEL, MATROX = "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0", "0000:02:00.0"
PT = vim.vm.device.VirtualPCIPassthrough


@pytest.fixture
def vc():
    with Vcsim() as sim:
        yield sim


def connect(sim, context=None):
    return sim.connect(context)


@pytest.fixture
def si(vc):  # pylint: disable=redefined-outer-name
    service = connect(vc)
    yield service
    Disconnect(service)


def host_of(service, name="DC0_H0"):
    return find(service, vim.HostSystem, name)


def passthru(host):
    return {i.id: (i.passthruEnabled, i.passthruActive) for i in host.configManager.pciPassthruSystem.pciPassthruInfo}


def set_passthru(host, ids, enabled=True, apply_now=False, label=None):
    host.configManager.pciPassthruSystem.UpdatePassthruConfig(
        [vim.host.PciPassthruConfig(id=i, passthruEnabled=enabled, applyNow=apply_now, hardwareLabel=label) for i in ids])


def reboot(host):
    """As esxi_passthrough does: maintenance mode, RebootHost_Task, out again."""
    WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))
    WaitForTask(host.RebootHost_Task(force=False))
    WaitForTask(host.ExitMaintenanceMode_Task(timeout=0))


def running_types(host):
    return {g.pciId: g.graphicsType for g in host.configManager.graphicsManager.graphicsInfo}


def config_target(host):
    return host.parent.environmentBrowser.QueryConfigTarget(host=host)


def task_fault(task):
    """The fault a task failed with (pyVmomi raises it from WaitForTask)."""
    with pytest.raises(vim.fault.VimFault) as err:
        WaitForTask(task)
    return err.value


def off_vm(service, name="DC0_H0_VM0"):
    vm = find(service, vim.VirtualMachine, name)
    if vm.runtime.powerState != "poweredOff":
        WaitForTask(vm.PowerOffVM_Task())
    return vm


def add_spec(backing, key=-100):
    return vim.vm.device.VirtualDeviceSpec(operation="add", device=PT(key=key, backing=backing))


def static_backing(host, pci_id=A100, **override):
    """The backing a module builds from QueryConfigTarget (deviceId as hex, vendorId signed)."""
    info = next(p for p in config_target(host).pciPassthrough if p.pciDevice.id == pci_id)
    fields = dict(id=info.pciDevice.id, deviceId="%x" % (info.pciDevice.deviceId & 0xFFFF), systemId=info.systemId,
                  vendorId=info.pciDevice.vendorId, deviceName=info.pciDevice.deviceName)
    fields.update(override)
    return PT.DeviceBackingInfo(**fields)


def dynamic_backing(vendor=0x10DE, device=0x1EB8, label=""):
    return PT.DynamicBackingInfo(allowedDevice=[PT.AllowedDevice(vendorId=vendor, deviceId=device)], customLabel=label,
                                 deviceName="", useAutoDetect=False)


def reconfigure(vm, **spec):
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(**spec)))


# --- host hardware and passthrough --------------------------------------------------------------

def test_gpu_devices_have_signed_16_bit_ids(si):  # pylint: disable=redefined-outer-name
    devices = {d.id: d for d in host_of(si).hardware.pciDevice}
    a100, t4, intel, matrox = devices[A100], devices[T4], devices[INTEL], devices[MATROX]
    assert (a100.vendorId, a100.deviceId, a100.classId) == (4318, 0x20F1, 0x0302)
    assert (t4.vendorId, t4.deviceId, t4.classId) == (4318, 0x1EB8, 0x0302)
    assert (matrox.vendorId, matrox.classId) == (0x102B, 0x0300)
    assert "A100" in a100.deviceName and a100.vendorName == "NVIDIA Corporation"
    # ids above 0x7fff come back negative: Intel's 0x8086 is -32634
    assert (intel.vendorId, intel.deviceId, intel.classId) == (-32634, 0x56C0, 0x0380)
    assert all(-32768 <= d.vendorId < 32768 and -32768 <= d.deviceId < 32768 for d in devices.values())
    # every host has its own copy, with the GPUs
    assert A100 in {d.id for d in host_of(si, "DC0_C0_H2").hardware.pciDevice}


def test_pci_passthru_info_lists_every_device(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    infos = host.configManager.pciPassthruSystem.pciPassthruInfo
    assert {i.id for i in infos} == {d.id for d in host.hardware.pciDevice}
    assert {i.id for i in infos if i.passthruCapable} == {A100, T4, INTEL}
    assert not any(i.passthruEnabled or i.passthruActive for i in infos)
    assert all(i.dependentDevice == i.id for i in infos)
    assert [(i.id, i.passthruCapable) for i in host.config.pciPassthruInfo] == [(i.id, i.passthruCapable) for i in infos]
    assert host.configManager.pciPassthruSystem != host_of(si, "DC0_C0_H0").configManager.pciPassthruSystem


def test_batch_without_apply_now_waits_for_a_reboot_in_maintenance_mode(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    boot = host.runtime.bootTime
    set_passthru(host, [A100, T4], apply_now=False)
    assert passthru(host)[A100] == passthru(host)[T4] == (True, False)
    assert host.summary.rebootRequired
    assert not config_target(host).pciPassthrough

    fault = task_fault(host.RebootHost_Task(force=False))
    assert isinstance(fault, vim.fault.InvalidState) and "maintenance mode" in fault.msg
    assert passthru(host)[A100] == (True, False)

    WaitForTask(host.EnterMaintenanceMode_Task(timeout=0))
    WaitForTask(host.RebootHost_Task(force=False))
    assert passthru(host)[A100] == passthru(host)[T4] == (True, True)
    assert not host.summary.rebootRequired
    assert host.runtime.bootTime > boot
    assert host.runtime.inMaintenanceMode
    assert {i.id: i.passthruActive for i in host.config.pciPassthruInfo}[A100]  # host.config mirrors the manager
    # the other hosts did not change
    assert passthru(host_of(si, "DC0_C0_H0"))[A100] == (False, False)


def test_forced_reboot_outside_maintenance_mode_powers_vms_off(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    vm = find(si, vim.VirtualMachine, "DC0_H0_VM0")
    assert vm.runtime.powerState == "poweredOn"
    set_passthru(host, [T4])
    WaitForTask(host.RebootHost_Task(force=True))
    assert passthru(host)[T4] == (True, True)
    assert vm.runtime.powerState == "poweredOff"


def test_apply_now_activates_at_once_both_ways(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    assert passthru(host)[A100] == (True, True) and not host.summary.rebootRequired
    set_passthru(host, [A100], enabled=False, apply_now=False)
    assert passthru(host)[A100] == (False, True) and host.summary.rebootRequired
    set_passthru(host, [A100], enabled=False, apply_now=True)
    assert passthru(host)[A100] == (False, False)


def test_no_apply_now_devices_wait_for_a_reboot_even_with_apply_now():
    with Vcsim(args=["-no-apply-now", T4 + "," + INTEL]) as sim:
        service = connect(sim)
        host = host_of(service)
        set_passthru(host, [A100, T4, INTEL], apply_now=True)
        state = passthru(host)
        assert state[A100] == (True, True) and state[T4] == state[INTEL] == (True, False)
        assert host.summary.rebootRequired
        reboot(host)
        assert passthru(host)[T4] == (True, True) and not host.summary.rebootRequired
        set_passthru(host, [T4], enabled=False, apply_now=True)  # disabling waits for a reboot too
        assert passthru(host)[T4] == (False, True)
        Disconnect(service)


def test_non_capable_device_is_refused_and_the_batch_is_not_applied(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    with pytest.raises(vim.fault.HostConfigFault) as err:
        set_passthru(host, [A100, MATROX], apply_now=True)
    assert "not passthrough capable" in err.value.msg and MATROX in err.value.msg
    assert passthru(host)[A100] == (False, False)
    with pytest.raises(vim.fault.HostConfigFault, match="No PCI device"):
        set_passthru(host, ["0000:99:00.0"])


def test_disabling_now_a_device_a_running_vm_uses_is_refused(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(static_backing(host))], memoryReservationLockedToMax=True)
    WaitForTask(vm.PowerOnVM_Task())
    with pytest.raises(vim.fault.HostConfigFault, match="in use by the powered-on VM DC0_H0_VM0"):
        set_passthru(host, [A100], enabled=False, apply_now=True)
    assert passthru(host)[A100] == (True, True)


# --- graphics and QueryConfigTarget --------------------------------------------------------------

def test_shared_direct_graphics_offers_vgpu_profiles_after_a_reboot(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    graphics = host.configManager.graphicsManager
    assert graphics.graphicsConfig.hostDefaultGraphicsType == "shared"
    assert not config_target(host).sharedGpuPassthroughTypes

    graphics.UpdateGraphicsConfig(vim.host.GraphicsConfig(hostDefaultGraphicsType="sharedDirect",
                                                          sharedPassthruAssignmentPolicy="consolidation"))
    config = graphics.graphicsConfig
    assert (config.hostDefaultGraphicsType, config.sharedPassthruAssignmentPolicy) == ("sharedDirect", "consolidation")
    # configured, not yet in effect: ESXi needs an Xorg restart or a reboot
    assert running_types(host) == {A100: "shared", T4: "shared", INTEL: "basic", MATROX: "basic"}
    assert not config_target(host).sharedGpuPassthroughTypes and not graphics.sharedPassthruGpuTypes
    reboot(host)
    assert running_types(host) == {A100: "sharedDirect", T4: "sharedDirect", INTEL: "basic", MATROX: "basic"}
    profiles = [t.vgpu for t in config_target(host).sharedGpuPassthroughTypes]
    assert "grid_a100-4c" in profiles and "grid_t4-2q" in profiles
    assert set(graphics.sharedPassthruGpuTypes) == set(profiles)
    assert host.config.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"
    assert not config_target(host_of(si, "DC0_C0_H0")).sharedGpuPassthroughTypes

    # a per-device type wins over the default; a passthrough-active GPU offers no vGPU
    graphics.UpdateGraphicsConfig(vim.host.GraphicsConfig(
        hostDefaultGraphicsType="sharedDirect", sharedPassthruAssignmentPolicy="performance",
        deviceType=[vim.host.GraphicsConfig.DeviceType(deviceId=T4, graphicsType="shared")]))
    assert running_types(host)[T4] == "sharedDirect"
    reboot(host)
    assert running_types(host)[T4] == "shared"
    set_passthru(host, [A100], apply_now=True)
    assert {g.pciId: g.graphicsType for g in graphics.graphicsInfo}[A100] == "direct"
    assert not config_target(host).sharedGpuPassthroughTypes


def test_graphics_config_refuses_unknown_values(si):  # pylint: disable=redefined-outer-name
    graphics = host_of(si).configManager.graphicsManager
    with pytest.raises(vmodl.fault.InvalidArgument, match="hostDefaultGraphicsType"):
        graphics.UpdateGraphicsConfig(vim.host.GraphicsConfig(hostDefaultGraphicsType="direct",
                                                              sharedPassthruAssignmentPolicy="performance"))
    with pytest.raises(vmodl.fault.InvalidArgument, match="not a GPU"):
        graphics.UpdateGraphicsConfig(vim.host.GraphicsConfig(
            hostDefaultGraphicsType="shared", sharedPassthruAssignmentPolicy="performance",
            deviceType=[vim.host.GraphicsConfig.DeviceType(deviceId=MATROX, graphicsType="sharedDirect")]))
    assert graphics.graphicsConfig.hostDefaultGraphicsType == "shared"


def test_query_config_target_lists_active_devices_with_system_id(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    set_passthru(host, [T4])  # enabled, not active yet
    target = config_target(host)
    assert [p.pciDevice.id for p in target.pciPassthrough] == [A100]
    entry = target.pciPassthrough[0]
    assert entry.systemId and entry.systemId == host.hardware.systemInfo.uuid
    assert entry.pciDevice.deviceId == 0x20F1 and entry.pciDevice.vendorId == 4318
    assert [(d.vendorId, d.deviceId) for d in target.dynamicPassthrough] == [(0x10DE, 0x20F1)]
    assert target.datastore and target.network  # the stock fields are kept
    # without a host: every host of the compute resource (here the cluster's, none active)
    cluster_host = host_of(si, "DC0_C0_H1")
    set_passthru(cluster_host, [T4], apply_now=True)
    everywhere = cluster_host.parent.environmentBrowser.QueryConfigTarget()
    assert [(p.pciDevice.id, p.systemId) for p in everywhere.pciPassthrough] == [(T4, cluster_host.hardware.systemInfo.uuid)]


# --- what ESXi refuses on VMs --------------------------------------------------------------------

def test_a_passthrough_change_on_a_powered_on_vm_is_refused(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    vm = find(si, vim.VirtualMachine, "DC0_H0_VM0")
    assert vm.runtime.powerState == "poweredOn"
    fault = task_fault(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add_spec(static_backing(host))])))
    assert isinstance(fault, vim.fault.InvalidPowerState) and "Powered on" in fault.msg
    assert not [d for d in vm.config.hardware.device if isinstance(d, PT)]
    reconfigure(vm, annotation="other changes still work")  # only passthrough changes are refused


def test_power_on_needs_a_full_memory_reservation(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(static_backing(host))])
    fault = task_fault(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault)
    assert "should be equal to memsize(%d)" % vm.config.hardware.memoryMB in fault.msg
    assert vm.runtime.powerState == "poweredOff"
    reconfigure(vm, memoryAllocation=vim.ResourceAllocationInfo(reservation=vm.config.hardware.memoryMB))
    WaitForTask(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"


def test_a_static_device_serves_one_running_vm(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    first, second = off_vm(si, "DC0_H0_VM0"), off_vm(si, "DC0_H0_VM1")
    for vm in (first, second):
        reconfigure(vm, deviceChange=[add_spec(static_backing(host))], memoryReservationLockedToMax=True)
    WaitForTask(first.PowerOnVM_Task())
    fault = task_fault(second.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault) and "in use by the powered-on VM DC0_H0_VM0" in fault.msg
    WaitForTask(first.PowerOffVM_Task())
    WaitForTask(second.PowerOnVM_Task())


def test_static_backing_must_name_an_active_device(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    set_passthru(host, [T4])  # pending a reboot
    vm = off_vm(si)
    backing = static_backing(host, id=T4, deviceId="1eb8")
    fault = task_fault(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add_spec(backing)])))
    assert isinstance(fault, vim.fault.InvalidDeviceBacking) and "not active" in fault.msg and T4 in fault.msg
    assert not [d for d in vm.config.hardware.device if isinstance(d, PT)]


@pytest.mark.parametrize("override, why", [
    ({"deviceId": "8433"}, "deviceId in decimal, not hex"),
    ({"vendorId": 0x1002}, "another vendor's id"),
    ({"systemId": "not-this-host"}, "systemId of another host"),
])
def test_power_on_checks_the_static_backing_against_the_host(si, override, why):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(static_backing(host, **override))], memoryReservationLockedToMax=True)
    fault = task_fault(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault), why
    assert "do not match the device currently at " + A100 in fault.msg


def test_a_device_with_an_id_above_0x7fff_round_trips(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [INTEL], apply_now=True)
    target = config_target(host)
    assert [p.pciDevice.vendorId for p in target.pciPassthrough] == [-32634]
    assert [(d.vendorId, d.deviceId) for d in target.dynamicPassthrough] == [(0x8086, 0x56C0)]
    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(static_backing(host, INTEL))], memoryReservationLockedToMax=True)
    WaitForTask(vm.PowerOnVM_Task())
    WaitForTask(vm.PowerOffVM_Task())
    reconfigure(vm, deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="remove", device=d)
                                  for d in vm.config.hardware.device if isinstance(d, PT)])
    reconfigure(vm, deviceChange=[add_spec(dynamic_backing(0x8086, 0x56C0))])
    WaitForTask(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"


def test_direct_path_and_vgpu_are_never_on_one_vm(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    set_passthru(host, [A100], apply_now=True)
    vm = off_vm(si)
    vgpu = PT.VmiopBackingInfo(vgpu="grid_t4-2q")
    for direct in (static_backing(host), dynamic_backing()):
        fault = task_fault(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add_spec(direct), add_spec(vgpu, -101)])))
        assert isinstance(fault, vim.fault.InvalidDeviceSpec) and "both" in fault.msg
    # also when the vGPU comes in a later change
    reconfigure(vm, deviceChange=[add_spec(vgpu)])
    fault = task_fault(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add_spec(static_backing(host), -101)])))
    assert isinstance(fault, vim.fault.InvalidDeviceSpec)
    assert [d.backing.vgpu for d in vm.config.hardware.device if isinstance(d, PT)] == ["grid_t4-2q"]


def test_vgpu_power_on_needs_a_shared_direct_gpu(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(PT.VmiopBackingInfo(vgpu="grid_t4-2q"))], memoryReservationLockedToMax=True)
    fault = task_fault(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault) and "sharedDirect" in fault.msg
    host.configManager.graphicsManager.UpdateGraphicsConfig(vim.host.GraphicsConfig(
        hostDefaultGraphicsType="sharedDirect", sharedPassthruAssignmentPolicy="performance"))
    fault = task_fault(vm.PowerOnVM_Task())  # configured, not in effect before the reboot
    assert isinstance(fault, vim.fault.GenericVmConfigFault) and "sharedDirect" in fault.msg
    WaitForTask(host.RebootHost_Task(force=True))
    WaitForTask(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"


def test_dynamic_direct_path_needs_hardware_version_17(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    spec = vim.vm.ConfigSpec(name="old-hw", version="vmx-13", guestId="otherGuest", memoryMB=64, numCPUs=1,
                             files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
    datacenter = find(si, vim.Datacenter, "DC0")
    WaitForTask(datacenter.vmFolder.CreateVM_Task(config=spec, pool=host.parent.resourcePool, host=host))
    vm = find(si, vim.VirtualMachine, "old-hw")
    fault = task_fault(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[add_spec(dynamic_backing())])))
    assert isinstance(fault, vim.fault.DeviceUnsupportedForVmVersion) and "vmx-17" in fault.msg

    WaitForTask(vm.UpgradeVM_Task())
    assert vm.config.version == "vmx-19"
    reconfigure(vm, deviceChange=[add_spec(dynamic_backing())], memoryReservationLockedToMax=True)
    allowed = [d.backing.allowedDevice for d in vm.config.hardware.device if isinstance(d, PT)][0]
    assert [(a.vendorId, a.deviceId) for a in allowed] == [(0x10DE, 0x1EB8)]  # kept at API 7.0.3

    fault = task_fault(vm.PowerOnVM_Task())  # no T4 with passthrough active yet
    assert isinstance(fault, vim.fault.GenericVmConfigFault) and "Dynamic DirectPath" in fault.msg
    set_passthru(host, [T4], apply_now=True)
    WaitForTask(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"


def test_hardware_labels_reach_pci_passthru_info_config_target_and_power_on(si):  # pylint: disable=redefined-outer-name
    """hardwareLabel (API 7.0.2) is read from the request's XML (govmomi 0.24.2's types lack it),
    reported in pciPassthruInfo and as QueryConfigTarget's dynamicPassthrough customLabel, and a
    Dynamic DirectPath backing with a customLabel powers on only with a device of that label."""
    host = host_of(si)
    set_passthru(host, [T4], apply_now=True, label="t4-inference")
    set_passthru(host, [A100], apply_now=True)  # no label element: none set, none changed
    labels = {i.id: i.hardwareLabel for i in host.configManager.pciPassthruSystem.pciPassthruInfo}
    assert labels[T4] == "t4-inference" and labels[A100] is None
    assert {i.id: i.hardwareLabel for i in host.config.pciPassthruInfo}[T4] == "t4-inference"
    assert {(d.deviceId, d.customLabel) for d in config_target(host).dynamicPassthrough} == {
        (0x1EB8, "t4-inference"), (0x20F1, None)}

    vm = off_vm(si)
    reconfigure(vm, deviceChange=[add_spec(dynamic_backing(label="t4-training"))], memoryReservationLockedToMax=True)
    fault = task_fault(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault) and 'hardware label "t4-training"' in fault.msg
    set_passthru(host, [T4], label="t4-training")  # relabelled, passthrough untouched
    assert passthru(host)[T4] == (True, True)
    WaitForTask(vm.PowerOnVM_Task())
    WaitForTask(vm.PowerOffVM_Task())
    set_passthru(host, [T4], label="")  # an empty label removes it
    assert {i.id: i.hardwareLabel for i in host.configManager.pciPassthruSystem.pciPassthruInfo}[T4] is None
    fault = task_fault(vm.PowerOnVM_Task())
    assert isinstance(fault, vim.fault.GenericVmConfigFault)
    # a refused batch sets no label
    with pytest.raises(vim.fault.HostConfigFault):
        set_passthru(host, [T4, MATROX], label="t4-training")
    assert {i.id: i.hardwareLabel for i in host.configManager.pciPassthruSystem.pciPassthruInfo}[T4] is None


def test_find_all_by_uuid_lists_clones_that_share_a_bios_uuid(si):  # pylint: disable=redefined-outer-name
    index = si.RetrieveContent().searchIndex
    first, second = find(si, vim.VirtualMachine, "DC0_H0_VM0"), find(si, vim.VirtualMachine, "DC0_H0_VM1")
    assert [vm._moId for vm in index.FindAllByUuid(None, first.config.uuid, True, False)] == [first._moId]  # pylint: disable=protected-access
    reconfigure(second, uuid=first.config.uuid)
    assert sorted(vm.name for vm in index.FindAllByUuid(None, first.config.uuid, True, False)) == ["DC0_H0_VM0", "DC0_H0_VM1"]
    assert list(index.FindAllByUuid(None, "no-such-uuid", True, False)) == []
    assert [vm.name for vm in index.FindAllByUuid(None, first.config.instanceUuid, True, True)] == ["DC0_H0_VM0"]


def test_create_vm_with_direct_path_and_vgpu_is_refused(si):  # pylint: disable=redefined-outer-name
    host = host_of(si)
    spec = vim.vm.ConfigSpec(name="mixed", guestId="otherGuest", memoryMB=64, numCPUs=1,
                             files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
                             deviceChange=[add_spec(dynamic_backing()), add_spec(PT.VmiopBackingInfo(vgpu="grid_t4-2q"), -101)])
    datacenter = find(si, vim.Datacenter, "DC0")
    fault = task_fault(datacenter.vmFolder.CreateVM_Task(config=spec, pool=host.parent.resourcePool, host=host))
    assert isinstance(fault, vim.fault.InvalidDeviceSpec)
    with pytest.raises(StopIteration):
        find(si, vim.VirtualMachine, "mixed")


# --- the simulator itself ------------------------------------------------------------------------

def test_request_log_has_one_line_per_soap_request(vc):  # pylint: disable=redefined-outer-name
    service = connect(vc)
    assert vc.requests()[:2] == ["RetrieveServiceContent", "Login"]
    host = host_of(service)
    system = host.configManager.pciPassthruSystem
    before = len(vc.requests())
    system.UpdatePassthruConfig([vim.host.PciPassthruConfig(id=A100, passthruEnabled=True, applyNow=True)])
    assert vc.requests()[before:] == ["UpdatePassthruConfig"]
    before = len(vc.requests())
    assert system.pciPassthruInfo
    assert len(vc.requests()) == before + 1
    before = len(vc.requests())
    WaitForTask(host.RebootHost_Task(force=True))
    new = vc.requests()[before:]
    assert new[0] == "RebootHost_Task" and "CurrentTime" not in new  # the session check is not counted
    Disconnect(service)
    assert vc.requests()[-1] == "Logout"


def test_login_takes_only_the_configured_credentials(vc):  # pylint: disable=redefined-outer-name
    with pytest.raises(vim.fault.InvalidLogin):
        SmartConnect(host=vc.host, port=vc.port, user=vc.user, pwd="wrong",
                     sslContext=ssl._create_unverified_context())  # pylint: disable=protected-access
    service = connect(vc)
    host = host_of(service)
    Disconnect(service)  # logs the session out; the stub still sends its cookie
    with pytest.raises(vim.fault.NotAuthenticated):
        host.RebootHost_Task(force=True)
    with pytest.raises(vim.fault.NotAuthenticated):
        host.configManager.pciPassthruSystem.UpdatePassthruConfig([])


def test_an_untrusted_certificate_fails_verification():
    # 127.0.0.2: pyVmomi skips verification for 127.0.0.1 and localhost when given no SSL context
    with Vcsim(ip="127.0.0.2") as sim:
        for context in (ssl.create_default_context(), None):
            with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate"):
                SmartConnect(host=sim.host, port=sim.port, user=sim.user, pwd=sim.password, sslContext=context)
        trusted = connect(sim, ssl.create_default_context(cafile=sim.cert_file))
        assert trusted.content.about.apiVersion == "7.0.3.0"
        Disconnect(trusted)


def test_standalone_esxi_mode_and_stop():
    sim = Vcsim(args=["-esx"])
    with sim:
        service = connect(sim)
        content = service.RetrieveContent()
        assert content.about.apiType == "HostAgent"
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.HostSystem], True)
        [host] = view.view
        set_passthru(host, [A100], apply_now=True)
        assert [p.pciDevice.id for p in config_target(host).pciPassthrough] == [A100]
        process, workdir = sim._proc, sim.workdir  # pylint: disable=protected-access
    assert process.returncode is not None
    assert not os.path.exists(workdir)
