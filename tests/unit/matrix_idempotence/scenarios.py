# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One change-making scenario per module, on a synthetic root or a fake API, for the idempotence
matrix (test_idempotence.py) and the file-mode checks (tests/unit/test_security_static.py).

A scenario is ``setup(tree, monkeypatch) -> Case``: the module, its arguments, and ``state()``,
which reads back everything the module may change (the whole tree, the fake's calls), so a test
can tell whether a run wrote anything. The hosts are the ones the modules' own unit tests use.
"""

import os
import sys

from ansible_collections.passthrough.gpu.plugins.module_utils import _hugepages, _vm_mmio, _vsphere
from ansible_collections.passthrough.gpu.plugins.modules import (esxi_passthrough, esxi_passthrough_info,
                                                                 esxi_vm_passthrough, gpu_facts, host_config, hugepages,
                                                                 iommu_facts, iommu_kernel_args,
                                                                 libvirt_passthrough, proxmox_hostpci, vfio_bind,
                                                                 vm_mmio)

UNIT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(UNIT))
for _where in ("plugins/modules", "plugins/module_utils"):
    if os.path.join(UNIT, _where) not in sys.path:
        sys.path.insert(0, os.path.join(UNIT, _where))

# The fakes of the modules' own unit tests (the vSphere calls and virsh are the only things faked).
from test_esxi_passthrough import CONNECTION, Host  # noqa: E402  pylint: disable=wrong-import-position
from test_esxi_vm_passthrough_module import ARGS as VM_ARGS, FakeVm  # noqa: E402  pylint: disable=wrong-import-position
from test_libvirt import fake_virsh_host  # noqa: E402  pylint: disable=wrong-import-position
from test_vm_mmio_module import ARGS as MMIO_ARGS, FakeVm as MmioVm  # noqa: E402  pylint: disable=wrong-import-position

GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\nGRUB_CMDLINE_LINUX=""\n'
PVE_CONF = "etc/pve/qemu-server/100.conf"
VFIO_CONF = "etc/modprobe.d/passthrough-gpu-vfio.conf"
INITRAMFS_MODULES = "etc/initramfs-tools/modules"
MOUNT_UNIT = "etc/systemd/system/dev-hugepages1G.mount"


class Case(object):
    """What one scenario runs: ``module`` with ``args``; ``state()`` reads back what it may change;
    ``files`` are the paths (relative to the root) it is expected to write, for file modules."""

    def __init__(self, module, args, state, files=(), read_only=False):
        self.module = module
        self.args = args
        self.state = state
        self.files = list(files)
        self.read_only = read_only


def _grub_host(tree):
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "#!/bin/sh\n")
    tree.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pse pdpe1gb\n")
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro quiet")
    return tree


def _memory(tree):
    tree.write("proc/meminfo", "MemTotal:        2005196 kB\nHugepagesize:       2048 kB\n")
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       2005196 kB\n")


def iommu_kernel_args_case(tree, _monkeypatch):
    _grub_host(tree)
    return Case(iommu_kernel_args, {"root": tree.root}, tree.snapshot, files=["etc/default/grub"])


def hugepages_sysctl_case(tree, _monkeypatch):
    _grub_host(tree)
    _memory(tree)
    return Case(hugepages, {"root": tree.root, "size": "2M", "memory": "1G"}, tree.snapshot,
                files=[_hugepages.SYSCTL_FILE])


def hugepages_1g_case(tree, _monkeypatch):
    """1G pages: the kernel arguments in /etc/default/grub and a mount unit in a directory that
    does not exist yet (etc/systemd/system: two new directories)."""
    _grub_host(tree)
    _memory(tree)
    return Case(hugepages, {"root": tree.root, "size": "1G", "count": 1, "mount_path": "/dev/hugepages1G"},
                tree.snapshot, files=["etc/default/grub", MOUNT_UNIT])


def vfio_bind_case(tree, _monkeypatch):
    """The lab VM's layout: a new modprobe.d file (in a new directory) and an edited initramfs list."""
    tree.lab()
    os.makedirs(tree.path("lib/modules/6.1.0-50-amd64"))
    tree.write(INITRAMFS_MODULES, "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "")
    return Case(vfio_bind, {"root": tree.root, "devices": ["01:00.0"]}, tree.snapshot,
                files=[VFIO_CONF, INITRAMFS_MODULES])


def host_config_case(tree, _monkeypatch):
    """The three host parts at once: 1G pages and the IOMMU in one GRUB edit, the lab GPU on vfio-pci."""
    vfio_bind_case(tree, _monkeypatch)
    _grub_host(tree)
    _memory(tree)
    args = {"root": tree.root, "hugepages": {"size": "1G", "count": 1}, "kernel_args": {"iommu": "intel"},
            "vfio": {"devices": ["01:00.0"]}}
    return Case(host_config, args, tree.snapshot, files=["etc/default/grub", VFIO_CONF, INITRAMFS_MODULES])


def proxmox_hostpci_case(tree, _monkeypatch):
    tree.write(PVE_CONF, "boot: order=scsi0\ncores: 4\nmemory: 8192\nname: gpu\n")
    tree.write("proc/1/cmdline", "/sbin/init\0")
    tree.device("0000:01:00.0")
    args = {"root": tree.root, "vmid": 100, "devices": [{"host": "0000:01:00", "x_vga": True}],
            "machine": "q35", "bios": "ovmf"}
    return Case(proxmox_hostpci, args, tree.snapshot, files=[PVE_CONF])


def libvirt_passthrough_case(tree, monkeypatch):
    fake = fake_virsh_host(tree, monkeypatch)
    args = {"root": tree.root, "name": "guest", "hostdevs": ["0000:01:00.0"], "all_functions": True,
            "hugepages": True, "firmware": "efi"}
    return Case(libvirt_passthrough, args, lambda: (fake.xml, tree.snapshot()))


def esxi_passthrough_case(_tree, monkeypatch):
    """One fake host for every run (the module's unit test makes a fresh one per run)."""
    host = Host(dict(CONNECTION))
    monkeypatch.setattr(_vsphere, "HostApi", lambda params: host)

    def state():
        return ([list(u) for u in host.updates],
                sorted((i.id, i.passthruEnabled, i.passthruActive) for i in host.info.values()))
    return Case(esxi_passthrough, dict(CONNECTION, devices=["A100"]), state)


def esxi_vm_passthrough_case(_tree, monkeypatch):
    vm = FakeVm()
    monkeypatch.setattr(_vsphere, "connect", lambda params: "content")
    monkeypatch.setattr(_vsphere, "find_vm", lambda content, name, uuid: vm)
    monkeypatch.setattr(_vsphere, "wait", lambda task, what: None)
    return Case(esxi_vm_passthrough, dict(VM_ARGS, devices=[{"id": "3b:00.0"}]),
                lambda: (len(vm.specs), [type(d).__name__ for d in vm.config.hardware.device],
                         vm.config.memoryReservationLockedToMax))


def vm_mmio_case(_tree, monkeypatch):
    vm = MmioVm()
    monkeypatch.setattr(_vsphere, "connect", lambda params: "content")
    monkeypatch.setattr(_vsphere, "find_vm", lambda content, name, uuid: vm)
    monkeypatch.setattr(_vsphere, "wait", lambda task, what: None)
    monkeypatch.setattr(_vm_mmio, "POLL_SECONDS", 0.01)
    return Case(vm_mmio, dict(MMIO_ARGS), lambda: (list(vm.calls), vm.config.firmware,
                                                   [(o.key, o.value) for o in vm.config.extraConfig]))


def iommu_facts_case(tree, _monkeypatch):
    tree.workstation()
    return Case(iommu_facts, {"root": tree.root}, tree.snapshot, read_only=True)


def gpu_facts_case(tree, _monkeypatch):
    tree.workstation()
    return Case(gpu_facts, {"root": tree.root}, tree.snapshot, read_only=True)


def esxi_passthrough_info_case(tree, monkeypatch):
    case = esxi_passthrough_case(tree, monkeypatch)
    return Case(esxi_passthrough_info, dict(CONNECTION), case.state, read_only=True)


# Every module of plugins/modules, by name (test_idempotence checks that none is missing).
CHANGING = {
    "iommu_kernel_args": iommu_kernel_args_case,
    "hugepages": hugepages_sysctl_case,
    "hugepages_1g": hugepages_1g_case,
    "vfio_bind": vfio_bind_case,
    "host_config": host_config_case,
    "proxmox_hostpci": proxmox_hostpci_case,
    "libvirt_passthrough": libvirt_passthrough_case,
    "esxi_passthrough": esxi_passthrough_case,
    "esxi_vm_passthrough": esxi_vm_passthrough_case,
    "vm_mmio": vm_mmio_case,
}
READ_ONLY = {
    "iommu_facts": iommu_facts_case,
    "gpu_facts": gpu_facts_case,
    "esxi_passthrough_info": esxi_passthrough_info_case,
}
# The modules that write files under root, for the file-mode checks.
FILE_WRITERS = ("iommu_kernel_args", "hugepages", "hugepages_1g", "vfio_bind", "host_config", "proxmox_hostpci")
