# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_mmio and esxi_vm_passthrough through ansible-playbook against vcsim-gpu (tests/vcsim).

The targets (tests/integration/targets/vm_mmio, .../esxi_vm_passthrough) assert each module result
(check -> apply -> check -> apply, refusals); the hosts are set up by the host module,
passthrough.gpu.esxi_passthrough (the target's hosts phase), so the chain host module -> VM module
runs as users run it. This file runs one phase per ansible-playbook and reads the hosts and VMs
back with pyVmomi; it only makes two VMs and changes power states itself.

One simulator for the file (the ``vcsim`` fixture), so the tests run in order and build on each
other, as a playbook would: the last one is the acceptance check of the three finished VMs.
"""

import json
import os
import re
import subprocess
import time

import pytest
from pyVim.connect import Disconnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from helpers import BIN, REPO, ansible_env
from vcsim import find  # tests/vcsim, on sys.path through conftest.py

TARGETS = os.path.join(REPO, "tests", "integration", "targets")
A100, T4, FLEX = "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"
PT = vim.vm.device.VirtualPCIPassthrough
DIRECT_HOST, VGPU_HOST, FLEX_HOST = "DC0_H0", "DC0_C0_H0", "DC0_C0_H2"
STATIC_VM, DYNAMIC_VM = "DC0_H0_VM0", "DC0_H0_VM1"      # on DC0_H0: A100 and T4 passthrough-active
VGPU_VM, RUNNING_VM = "DC0_C0_RP0_VM1", "DC0_C0_RP0_VM0"  # on DC0_C0_H0 (sharedDirect), DC0_C0_H1
OLD_VM, FLEX_VM = "old-hw", "flex"                      # made here: vmx-13 on DC0_H0; on DC0_C0_H2 (Flex 170)
CHANGES = {"ReconfigVM_Task", "ShutdownGuest", "PowerOffVM_Task", "PowerOnVM_Task", "UpdatePassthruConfig",
           "UpdateGraphicsConfig"}
# The variables each target is driven with (test_the_targets_use_the_variables_they_are_given).
MMIO_VARIABLES = ("vm_mmio_phase", "vm_mmio_running", "vm_mmio_uuid")
PT_VARIABLES = {"pt_static_vm": STATIC_VM, "pt_dynamic_vm": DYNAMIC_VM, "pt_vgpu_vm": VGPU_VM, "pt_old_vm": OLD_VM,
                "pt_running_vm": RUNNING_VM, "pt_flex_vm": FLEX_VM, "pt_direct_host": DIRECT_HOST,
                "pt_vgpu_host": VGPU_HOST, "pt_flex_host": FLEX_HOST}


@pytest.fixture(scope="module")
def si(vcsim):  # pylint: disable=redefined-outer-name
    service = vcsim.connect()
    yield service
    Disconnect(service)


def vm_of(service, name):
    return find(service, vim.VirtualMachine, name)


def power(vm, state):
    if vm.runtime.powerState != state:
        WaitForTask(vm.PowerOnVM_Task() if state == "poweredOn" else vm.PowerOffVM_Task())


def make_vm(service, name, host_name, version):
    host = find(service, vim.HostSystem, host_name)
    spec = vim.vm.ConfigSpec(name=name, version=version, guestId="otherGuest", memoryMB=64, numCPUs=1,
                             files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
    WaitForTask(find(service, vim.Datacenter, "DC0").vmFolder.CreateVM_Task(config=spec, pool=host.parent.resourcePool,
                                                                            host=host))


@pytest.fixture(scope="module")
def hosts(vcsim, si):  # pylint: disable=redefined-outer-name
    """The host side, set by passthrough.gpu.esxi_passthrough itself (the target's hosts phase): A100
    and T4 active on DC0_H0 (apply_now), the Flex 170 on DC0_C0_H2, DC0_C0_H0 in sharedDirect mode
    after a reboot; read back here. Plus two powered-off VMs: vmx-13 on DC0_H0, vmx-19 on DC0_C0_H2."""
    make_vm(si, OLD_VM, DIRECT_HOST, "vmx-13")
    make_vm(si, FLEX_VM, FLEX_HOST, "vmx-19")
    h0, c0h0, c0h2 = (find(si, vim.HostSystem, name) for name in (DIRECT_HOST, VGPU_HOST, FLEX_HOST))
    boot_time = c0h0.runtime.bootTime
    requests = passthrough(vcsim, "hosts")
    assert requests.count("UpdatePassthruConfig") == 2 and requests.count("UpdateGraphicsConfig") == 1
    assert requests.count("RebootHost_Task") == 1 and c0h0.runtime.bootTime > boot_time
    active = dict((host.name, sorted(i.id for i in host.configManager.pciPassthruSystem.pciPassthruInfo
                                     if i.passthruActive)) for host in (h0, c0h0, c0h2))
    assert active == {DIRECT_HOST: [A100, T4], VGPU_HOST: [], FLEX_HOST: [FLEX]}
    graphics = c0h0.configManager.graphicsManager.graphicsConfig
    assert (graphics.hostDefaultGraphicsType, graphics.sharedPassthruAssignmentPolicy) == ("sharedDirect", "performance")
    assert not c0h0.runtime.inMaintenanceMode and not c0h0.summary.rebootRequired
    return h0, c0h0, c0h2


def playbook(vcsim, target, phase, env=None, **variables):  # pylint: disable=redefined-outer-name
    """One phase of a target; returns the simulator's requests made during it."""
    before = len(vcsim.requests())
    argv = [os.path.join(BIN, "ansible-playbook"), os.path.join(TARGETS, target, "playbook.yml"), "--diff",
            "-e", json.dumps(dict(variables, **{"%s_phase" % ("pt" if target == "esxi_vm_passthrough" else target):
                                                phase}))]
    environment = ansible_env(**(env or {}))
    if env is None:  # the connection must come from the playbook alone
        environment = dict((k, v) for k, v in environment.items() if not k.startswith("VMWARE_"))
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, "%s phase %s failed (rc %d) after %.0f s:\n%s\n%s" % (
        target, phase, proc.returncode, elapsed, proc.stdout[-12000:], proc.stderr[-4000:])
    print("%s phase %s: %.1f s" % (target, phase, elapsed))
    return vcsim.requests()[before:]


def mmio(vcsim, phase, **variables):  # pylint: disable=redefined-outer-name
    assert set(variables) < set(MMIO_VARIABLES), variables
    return playbook(vcsim, "vm_mmio", phase, env=vcsim.env(), **variables)


def passthrough(vcsim, phase):  # pylint: disable=redefined-outer-name
    """The esxi_vm_passthrough target; the connection goes through module_defaults (the action group
    in meta/runtime.yml), not the environment."""
    connection = {"hostname": vcsim.host, "port": vcsim.port, "username": vcsim.user, "password": vcsim.password}
    return playbook(vcsim, "esxi_vm_passthrough", phase, pt_vcsim=connection, **PT_VARIABLES)


def extra(vm):
    """extraConfig as ESXi would show it: the last value of each key (vcsim appends changed keys)."""
    return dict((o.key, o.value) for o in vm.config.extraConfig)


def settings(vm):
    return (vm.config.firmware, vm.config.memoryReservationLockedToMax, extra(vm).get("pciPassthru.use64bitMMIO"),
            extra(vm).get("pciPassthru.64bitMMIOSizeGB"))


def snapshot(vm):
    """What a refusal must leave alone: every device (passthrough backings in full) and the lock."""
    return ([(d.key, type(d).__name__, repr(d.backing) if isinstance(d, PT) else None)
             for d in vm.config.hardware.device], vm.config.memoryReservationLockedToMax, vm.runtime.powerState)


def backings(vm):
    return [d.backing for d in vm.config.hardware.device if isinstance(d, PT)]


def test_the_targets_use_the_variables_they_are_given():
    """Every <prefix>_* variable a target's files name is one the tests pass, and each one passed is used."""
    for target, prefix, given in (("vm_mmio", "vm_mmio_", set(MMIO_VARIABLES)),
                                  ("esxi_vm_passthrough", "pt_", set(PT_VARIABLES) | {"pt_phase", "pt_vcsim"})):
        named = set()
        for root, dummy, files in os.walk(os.path.join(TARGETS, target)):
            for name in files:
                with open(os.path.join(root, name), encoding="utf-8") as handle:
                    named |= set(re.findall(r"\b%s\w+" % prefix, handle.read()))
        assert named == given, target


# --- vm_mmio ------------------------------------------------------------------------------------

def test_vm_mmio_refusals_change_nothing(vcsim, si, hosts):  # pylint: disable=redefined-outer-name,unused-argument
    vm = vm_of(si, STATIC_VM)
    assert vm.runtime.powerState == "poweredOn"
    before = settings(vm)
    requests = mmio(vcsim, "refusals", vm_mmio_running=STATIC_VM)
    assert not CHANGES & set(requests), requests
    assert settings(vm) == before == ("bios", None, None, None) and vm.runtime.powerState == "poweredOn"


def test_vm_mmio_power_cycles_a_running_vm(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, STATIC_VM)
    requests = mmio(vcsim, "power_cycle", vm_mmio_running=STATIC_VM)
    # check mode sent nothing, the apply run cycled the guest once, the third run nothing
    assert [r for r in requests if r in CHANGES] == ["ShutdownGuest", "ReconfigVM_Task", "PowerOnVM_Task"]
    assert vm.runtime.powerState == "poweredOn"
    assert settings(vm) == ("efi", True, "TRUE", "128")  # A100 40GB by the bars rule


def test_vm_mmio_check_apply_check_apply(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, DYNAMIC_VM)
    power(vm, "poweredOff")
    requests = mmio(vcsim, "apply", vm_mmio_uuid=vm.config.uuid)
    assert requests.count("ReconfigVM_Task") == 1
    assert settings(vm) == ("efi", True, "TRUE", "32")  # 1 GPU by the count rule


# --- esxi_vm_passthrough ------------------------------------------------------------------------

def test_static_direct_path(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, STATIC_VM)
    power(vm, "poweredOff")
    requests = passthrough(vcsim, "static")  # connected through module_defaults, no VMWARE_* variables
    assert requests.count("ReconfigVM_Task") == 1


def test_dynamic_direct_path_added_removed_added(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, DYNAMIC_VM)
    assert vm.runtime.powerState == "poweredOff"
    requests = passthrough(vcsim, "dynamic")
    assert requests.count("ReconfigVM_Task") == 3  # add, remove, add again


def test_vgpu_profile(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, VGPU_VM)
    power(vm, "poweredOff")
    requests = passthrough(vcsim, "vgpu")
    assert requests.count("ReconfigVM_Task") == 1


def test_esxi_vm_passthrough_refusals_change_nothing(vcsim, si):  # pylint: disable=redefined-outer-name
    vms = [vm_of(si, name) for name in (STATIC_VM, DYNAMIC_VM, VGPU_VM, OLD_VM, RUNNING_VM)]
    assert vm_of(si, RUNNING_VM).runtime.powerState == "poweredOn"
    before = [snapshot(vm) for vm in vms]
    requests = passthrough(vcsim, "refusals")
    assert not CHANGES & set(requests), requests
    assert [snapshot(vm) for vm in vms] == before


def test_static_direct_path_of_a_vendor_id_above_0x7fff(vcsim, si):  # pylint: disable=redefined-outer-name
    vm = vm_of(si, FLEX_VM)
    assert vm.runtime.powerState == "poweredOff" and backings(vm) == []
    requests = passthrough(vcsim, "flex")
    assert requests.count("ReconfigVM_Task") == 1


# --- the acceptance check -----------------------------------------------------------------------

def test_the_vms_are_what_issue_4_asks_and_power_on(si, hosts):  # pylint: disable=redefined-outer-name
    h0, c0h0, c0h2 = hosts
    static_vm, dynamic_vm, vgpu_vm, flex_vm = (vm_of(si, name) for name in (STATIC_VM, DYNAMIC_VM, VGPU_VM, FLEX_VM))

    # EFI, all memory locked, 64-bit MMIO sized by the bars rule, and a static A100 from DC0_H0
    assert settings(static_vm) == ("efi", True, "TRUE", "128")
    [backing] = backings(static_vm)
    assert isinstance(backing, PT.DeviceBackingInfo)
    assert (backing.id, backing.deviceId, backing.vendorId) == (A100, "20f1", 0x10DE)
    assert backing.systemId == h0.hardware.systemInfo.uuid

    # Any T4, no label (a label must match a hardware label of the host's device)
    [backing] = backings(dynamic_vm)
    assert isinstance(backing, PT.DynamicBackingInfo) and not backing.customLabel
    assert [(a.vendorId, a.deviceId) for a in backing.allowedDevice] == [(0x10DE, 0x1EB8)]
    assert dynamic_vm.config.memoryReservationLockedToMax is True

    assert c0h0.configManager.graphicsManager.graphicsConfig.hostDefaultGraphicsType == "sharedDirect"
    assert [b.vgpu for b in backings(vgpu_vm)] == ["grid_a100-4c"]
    assert isinstance(backings(vgpu_vm)[0], PT.VmiopBackingInfo)
    assert vgpu_vm.config.memoryReservationLockedToMax is True

    # The Intel Flex 170: vendor id 0x8086 as the API's signed short
    [backing] = backings(flex_vm)
    assert isinstance(backing, PT.DeviceBackingInfo)
    assert (backing.id, backing.deviceId, backing.vendorId) == (FLEX, "56c0", -32634)
    assert backing.systemId == c0h2.hardware.systemInfo.uuid
    assert flex_vm.config.memoryReservationLockedToMax is True

    # The simulator checks at power-on what ESXi checks: reservation, systemId and ids, an active
    # device for the dynamic backing, a profile the host offers.
    for vm in (static_vm, dynamic_vm, vgpu_vm, flex_vm):
        WaitForTask(vm.PowerOnVM_Task())
        assert vm.runtime.powerState == "poweredOn", vm.name


def test_a_running_vm_that_has_its_devices_gets_only_the_lock(vcsim, si):  # pylint: disable=redefined-outer-name
    """Reserved in full but not locked, running with its A100: not refused, locked in place."""
    vm = vm_of(si, STATIC_VM)
    WaitForTask(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        memoryReservationLockedToMax=False,
        memoryAllocation=vim.ResourceAllocationInfo(reservation=vm.config.hardware.memoryMB))))
    assert vm.runtime.powerState == "poweredOn" and vm.config.memoryReservationLockedToMax is False
    devices = [repr(b) for b in backings(vm)]
    requests = passthrough(vcsim, "running_lock")
    assert [r for r in requests if r in CHANGES] == ["ReconfigVM_Task"]
    assert vm.config.memoryReservationLockedToMax is True and vm.runtime.powerState == "poweredOn"
    assert [repr(b) for b in backings(vm)] == devices
