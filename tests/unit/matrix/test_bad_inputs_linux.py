# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inputs to the Linux-side modules: each is refused with a message naming the problem,
and nothing under the root changes and no command runs (issue 6, point 1).

Every case runs the module's main() on one host tree (the lab VM's PCI layout plus a GRUB
host, huge page pools and a Proxmox VM config), changed by the case's ``setup`` first.
docs/bad_inputs.md shows the same table for readers.
"""

import os
import re
import shutil

import pytest

from ansible.module_utils import basic

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec
from ansible_collections.passthrough.gpu.plugins.modules import (
    gpu_facts, host_config, hugepages, iommu_facts, iommu_kernel_args, libvirt_passthrough, proxmox_hostpci, vfio_bind)

from checksums import differences, fingerprint  # beside this file; pytest puts its directory on sys.path

KERNEL = "6.1.0-50-amd64"
GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
VM_CONF = "etc/pve/qemu-server/100.conf"
CONF = "boot: order=scsi0\ncores: 4\nmachine: q35\nmemory: 8192\nname: gpu\n" \
       "scsi0: local-lvm:vm-100-disk-0,size=32G\n"
MEMINFO = "MemTotal:        2005196 kB\nHugepagesize:       2048 kB\n"


def build_host(tree):
    """The lab VM's PCI layout (tests/unit/sysfs_tree.py) with what every module reads."""
    tree.lab()
    tree.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pse pdpe1gb\n")
    tree.write("proc/meminfo", MEMINFO)
    tree.write("proc/1/cmdline", "/sbin/init\0")
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       2005196 kB\n")
    for kb in (2048, 1048576):
        tree.write("sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages" % kb, "0\n")
        tree.write("sys/devices/system/node/node0/hugepages/hugepages-%dkB/nr_hugepages" % kb, "0\n")
    tree.write("sys/devices/system/cpu/online", "0-3\n")
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "#!/bin/sh\n")
    tree.write("etc/initramfs-tools/modules", "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "#!/bin/sh\n")
    tree.write("lib/modules/%s/modules.alias" % KERNEL, "")
    tree.write(VM_CONF, CONF)
    return tree


# ---- changes to the host a case needs ------------------------------------------------------------

def remove(*rels):
    def setup(tree):
        for rel in rels:
            path = tree.path(rel)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
    setup.what = "no " + ", no ".join("/" + rel for rel in rels)
    return setup


def write(rel, text, what=None):
    def setup(tree):
        if isinstance(text, bytes):
            os.makedirs(os.path.dirname(tree.path(rel)), exist_ok=True)
            with open(tree.path(rel), "wb") as handle:
                handle.write(text)
        else:
            tree.write(rel, text)
    setup.what = what or "/%s: %r" % (rel, text if len(text) < 60 else text[:57] + "...")
    return setup


def both(*setups):
    def setup(tree):
        for one in setups:
            one(tree)
    setup.what = "; ".join(one.what for one in setups)
    return setup


def iommu_off(tree):
    """The IOMMU off: no IOMMU units or groups."""
    remove("sys/kernel/iommu_groups", "sys/class/iommu", "sys/devices/virtual/iommu")(tree)
    for address in os.listdir(tree.path("sys/bus/pci/devices")):
        os.unlink(tree.path("sys/bus/pci/devices", address, "iommu_group"))


def running_vm(tree):
    """VM 100 running: its pid file names a live kvm process."""
    tree.write("run/qemu-server/100.pid", "777\n")
    tree.write("proc/777/cmdline", "/usr/bin/kvm\0-id\0100\0-pidfile\0/var/run/qemu-server/100.pid\0")


def two_small_nodes(tree):
    """A host of two NUMA nodes of about 1 GiB each."""
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       1002598 kB\n")
    tree.write("sys/devices/system/node/node1/meminfo", "Node 1 MemTotal:       1002598 kB\n")


def no_numa(tree):
    """No /sys/devices/system/node (a kernel without NUMA)."""
    remove("sys/devices/system/node")(tree)


def no_bootloader(tree):
    """No /etc/default/grub and no update-grub (nor any other bootloader)."""
    remove("etc/default/grub", "usr/sbin/update-grub")(tree)


RESOURCE = "sys/devices/pci0000:00/0000:00:02.0/0000:01:00.0/resource"


def hostpci(*values):
    """VM 100's config with these hostpci0 lines."""
    lines = "".join("hostpci0: %s\n" % value for value in values)
    return write(VM_CONF, CONF + lines, "/%s has %s" % (VM_CONF, lines.strip().replace("\n", " and ")))


# ---- the table -----------------------------------------------------------------------------------
# (id, module, arguments (root is added), setup or None, regex the message must match)

CASES = [
    # iommu_facts
    ("facts-root-without-sysfs", iommu_facts, {}, remove("sys"),
     r"cannot list PCI devices in \S*/sys/bus/pci/devices"),
    ("facts-root-is-a-file", iommu_facts, {"root": "@/proc/cmdline"}, None,
     r"cannot list PCI devices in \S*/proc/cmdline/sys/bus/pci/devices: Not a directory"),
    ("facts-corrupt-resource-file", iommu_facts, {}, write(RESOURCE, "garbage\n"),
     r"^0000:01:00\.0: resource line 0 is not 'start end flags': 'garbage'$"),
    # gpu_facts
    ("gpu-class-unquoted-yaml-number", gpu_facts, {"device_classes": [3]}, None,
     r"^'3' is not a PCI class prefix: .*quoted in YAML"),
    ("gpu-class-not-hex", gpu_facts, {"device_classes": ["display"]}, None,
     r"^'display' is not a PCI class prefix"),
    ("gpu-classes-empty", gpu_facts, {"device_classes": []}, None, r"^device_classes is empty"),
    ("gpu-bar-ends-before-start", gpu_facts, {},
     write(RESOURCE, "0x0000000000002000 0x0000000000001000 0x0000000000040200\n"),
     r"^0000:01:00\.0: resource line 0 ends before it starts"),
    # vfio_bind
    ("vfio-malformed-address", vfio_bind, {"devices": ["01:00"]}, None,
     r"^'01:00' is neither a PCI address \(0000:01:00\.0 or 01:00\.0\) nor a vendor:device id"),
    ("vfio-unknown-address", vfio_bind, {"devices": ["0000:0a:00.0"]}, None,
     r"^no PCI device 0000:0a:00\.0 on this host$"),
    ("vfio-id-matches-nothing", vfio_bind, {"devices": ["10de:2204"]}, None,
     r"^no PCI device has the id 10de:2204$"),
    ("vfio-unquoted-yaml-address", vfio_bind, {"devices": [60.0]}, None,
     r"^'60\.0' is neither a PCI address.*YAML reads an unquoted 01:00\.0 as the number 60\.0"),
    ("vfio-dirty-group", vfio_bind, {"devices": ["0000:03:01.0"]}, None,
     r"^refusing, nothing was changed: IOMMU group 9 is not isolated: 0000:03:01\.0 .*shares group 9 with "
     r"0000:03:02\.0 .*allow_shared_group=true"),
    ("vfio-console-gpu", vfio_bind, {"devices": ["00:01.0"]}, None,
     r"^refusing, nothing was changed: 0000:00:01\.0 \[1234:1111\] class 030000 is the console GPU "
     r"\(boot_vga 1\).*set force=true"),
    ("vfio-bridge", vfio_bind, {"devices": ["00:02.0"]}, None,
     r"0000:00:02\.0 \[1b36:000c\] class 060400 is a PCI bridge; bridges stay with the host"),
    ("vfio-iommu-off", vfio_bind, {"devices": ["01:00.0"]}, iommu_off,
     r"^refusing, nothing was changed: the IOMMU is off \(no IOMMU groups\)"),
    ("vfio-id-also-matches-console", vfio_bind, {"devices": ["03:01.0"], "allow_shared_group": True}, None,
     r"persistent binding by id 1234:1111 would also give 0000:00:01\.0 .* to vfio-pci at boot; "
     r"use runtime only, or force=true"),
    ("vfio-blacklist-not-a-module", vfio_bind, {"devices": ["01:00.0"], "blacklist": ["nouveau; reboot"]}, None,
     r"^'nouveau; reboot' is not a kernel module name$"),
    ("vfio-blacklist-vfio-itself", vfio_bind, {"devices": ["01:00.0"], "blacklist": ["vfio_pci"]}, None,
     r"^blacklisting vfio_pci would stop vfio-pci itself$"),
    ("vfio-devices-empty", vfio_bind, {"devices": []}, None, r"^devices is empty"),
    ("vfio-bad-state", vfio_bind, {"devices": ["01:00.0"], "state": "present"}, None,
     r"value of state must be one of: bound, unbound, got: present"),
    ("vfio-modprobe-file-not-utf8", vfio_bind, {"devices": ["01:00.0"]},
     write("etc/modprobe.d/passthrough-gpu-vfio.conf", b"options vfio-pci ids=\xff\n"),
     r"passthrough-gpu-vfio\.conf is not UTF-8 text; not editing it"),
    ("vfio-runtime-and-persistent-off", vfio_bind, {"devices": ["01:00.0"], "runtime": False, "persistent": False},
     None, r"^runtime and persistent are both false: nothing to do"),
    ("vfio-modprobe-file-not-ours", vfio_bind, {"devices": ["01:00.0"], "modprobe_file": "/etc/modprobe.d/local.conf"},
     write("etc/modprobe.d/local.conf", "options snd_hda_intel power_save=0\n"),
     r"^modprobe_file /etc/modprobe\.d/local\.conf exists and was not written by vfio_bind"),
    ("vfio-modprobe-file-outside-modprobe-d", vfio_bind, {"devices": ["01:00.0"], "modprobe_file": "/etc/passwd"},
     write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n"),
     r"^modprobe_file /etc/passwd is not a \.conf file in a modprobe\.d directory"),
    # iommu_kernel_args
    ("args-iommu-on-and-off", iommu_kernel_args, {"iommu": "intel", "args": ["intel_iommu=off"]}, None,
     r"^args has intel_iommu=off, which turns off the intel IOMMU that iommu=intel asks for"),
    ("args-grub-unclosed-quote", iommu_kernel_args, {},
     write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash\n'),
     r"GRUB_CMDLINE_LINUX_DEFAULT.* opens a double quote it does not close on the same line"),
    ("args-grub-shell-expansion", iommu_kernel_args, {},
     write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet $(cat /etc/extra)"\n'),
     r"GRUB_CMDLINE_LINUX_DEFAULT.* uses shell expansion \(\$\)"),
    ("args-grub-not-utf8", iommu_kernel_args, {}, write("etc/default/grub", b'GRUB_CMDLINE_LINUX_DEFAULT="\xe9"\n'),
     r"etc/default/grub is not UTF-8 text; not editing it"),
    ("args-nothing-to-manage", iommu_kernel_args, {"iommu": "none"}, None,
     r"^nothing to manage: args is empty and iommu is none$"),
    ("args-white-space", iommu_kernel_args, {"args": ["video=efifb:off quiet"]}, None,
     r"^'video=efifb:off quiet' is not a kernel argument this module can manage"),
    ("args-two-values-one-key", iommu_kernel_args, {"args": ["iommu=pt", "iommu=nopt"]}, None,
     r"^more than one value asked for iommu$"),
    ("args-init-separator", iommu_kernel_args, {"args": ["--"]}, None,
     r"^'--' separates init's arguments and cannot be managed$"),
    ("args-no-bootloader", iommu_kernel_args, {}, no_bootloader,
     r"^no supported bootloader found under \S+ \(looked for .*/etc/default/grub\): set bootloader$"),
    ("args-systemd-boot-without-kernel-install", iommu_kernel_args, {"bootloader": "systemd_boot"}, None,
     r"^systemd-boot: kernel-install is not installed under "),
    ("args-proxmox-boot-tool-missing", iommu_kernel_args, {"bootloader": "proxmox_boot_tool"}, None,
     r"^proxmox-boot-tool is not installed under "),
    ("args-grub-and-systemd-boot", iommu_kernel_args, {},
     write("boot/efi/EFI/systemd/systemd-bootx64.efi", ""),
     r"both systemd-boot \(on the ESP at /boot/efi\) and GRUB \(/etc/default/grub\) are installed.*"
     r"set bootloader to grub or systemd_boot"),
    ("args-kernelstub-config-broken", iommu_kernel_args, {}, write("etc/kernelstub/configuration", "{\"user\": {}}"),
     r"^/etc/kernelstub/configuration has no user\.kernel_options list$"),
    ("args-grubby-off-host", iommu_kernel_args, {"bootloader": "grubby"},
     write("boot/loader/entries/fedora.conf", "title Fedora\nlinux /vmlinuz\noptions root=UUID=1 ro\n"),
     r"^grubby edits boot entries only on the running host: use root=/ to change them$"),
    ("args-auto-iommu-unknown-cpu", iommu_kernel_args, {},
     both(remove("sys/class/iommu"), write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: CentaurHauls\n")),
     r"^CPU vendor 'CentaurHauls' is neither GenuineIntel nor AuthenticAMD: set iommu to intel, amd or none$"),
    ("args-auto-iommu-no-cpuinfo", iommu_kernel_args, {}, remove("sys/class/iommu", "proc/cpuinfo"),
     r"^cannot read \S+/proc/cpuinfo to pick the IOMMU arguments: set iommu to intel, amd or none$"),
    # hugepages
    ("huge-1g-beyond-memory", hugepages, {"size": "1G", "count": 2}, None,
     r"^asked for 2 GiB of huge pages \(2 x 1G\) but this host has 1\.9 GiB of memory \(MemTotal 2005196 kB\)$"),
    ("huge-2m-beyond-memory", hugepages, {"size": "2M", "memory": "4G"}, None,
     r"^asked for 4 GiB of huge pages \(2048 x 2M\) but this host has 1\.9 GiB of memory"),
    ("huge-node-does-not-exist", hugepages, {"count": 1, "nodes": [1]}, None,
     r"^NUMA node 1 does not exist \(nodes: 0\)$"),
    ("huge-node-on-non-numa-host", hugepages, {"count": 1, "nodes": [0]}, no_numa,
     r"^NUMA node 0 does not exist \(nodes: none\)$"),
    ("huge-beyond-one-node", hugepages, {"count": 600, "nodes": [0]}, two_small_nodes,
     r"^asked for 1\.2 GiB of huge pages on NUMA node 0 but it has 979\.1 MiB \(MemTotal 1002598 kB\)$"),
    ("huge-node-twice", hugepages, {"count": 1, "nodes": [0, 0]}, None, r"^nodes lists NUMA node 0 more than once$"),
    ("huge-bad-page-size", hugepages, {"size": "4K", "count": 1}, None,
     r"value of size must be one of: 2M, 1G, got: 4K"),
    ("huge-1g-without-pdpe1gb", hugepages, {"size": "1G", "count": 1},
     write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pse\n"),
     r"^this CPU has no 1G pages \(no pdpe1gb flag in /proc/cpuinfo\): use size 2M$"),
    ("huge-memory-not-whole-pages", hugepages, {"size": "1G", "memory": "1536M"}, None,
     r"^memory 1536M is not a whole number of 1G pages$"),
    ("huge-memory-not-a-size", hugepages, {"memory": "lots"}, None,
     r"^memory 'lots' is not a size like 16G, 512M or 1GiB$"),
    ("huge-count-negative", hugepages, {"count": -1}, None, r"^count must not be negative$"),
    ("huge-count-and-memory", hugepages, {"count": 1, "memory": "2M"}, None,
     r"parameters are mutually exclusive: count\|memory"),
    ("huge-runtime-and-persistent-off", hugepages, {"count": 1, "runtime": False, "persistent": False}, None,
     r"^runtime and persistent are both false: nothing to do"),
    ("huge-mount-path-relative", hugepages, {"count": 1, "mount_path": "dev/hugepages1G"}, None,
     r"^mount_path must be an absolute path without white space or '\.\.', not 'dev/hugepages1G'$"),
    ("huge-mount-over-boot", hugepages, {"count": 1, "mount_path": "/boot"}, None,
     r"^mount_path /boot is a system directory: a hugetlbfs mounted there would hide what it holds"),
    ("huge-mount-unit-not-ours", hugepages, {"count": 1, "mount_path": "/srv/vm"},
     write("etc/systemd/system/srv-vm.mount", "[Mount]\nWhat=/dev/sdb1\nWhere=/srv/vm\n",
           "/etc/systemd/system/srv-vm.mount mounts a disk at /srv/vm"),
     r"^/etc/systemd/system/srv-vm\.mount exists and was not written by passthrough\.gpu\.hugepages"),
    ("huge-mount-over-files", hugepages, {"count": 1, "mount_path": "/srv/images"},
     write("srv/images/disk.qcow2", "", "/srv/images holds disk.qcow2"),
     r"^mount_path /srv/images is a directory that is not empty: a hugetlbfs mounted there would hide its files"),
    ("huge-mount-without-persistent", hugepages, {"count": 1, "mount_path": "/dev/hp", "persistent": False}, None,
     r"^mount_path needs persistent=true"),
    ("huge-2m-sysctl-under-1g-default", hugepages, {"count": 1},
     write("proc/meminfo", MEMINFO.replace("2048 kB", "1048576 kB")),
     r"^the default huge page size here is 1048576 kB, so vm\.nr_hugepages would not count 2M pages"),
    ("huge-1g-no-bootloader", hugepages, {"size": "1G", "count": 1}, no_bootloader,
     r"^no supported bootloader found under "),
    ("huge-meminfo-unreadable", hugepages, {"count": 1}, remove("proc/meminfo"),
     r"^cannot read MemTotal from \S+/proc/meminfo$"),
    # proxmox_hostpci
    ("pve-missing-vm-config", proxmox_hostpci, {"vmid": 999, "devices": [{"host": "01:00"}]}, None,
     r"^/etc/pve/qemu-server/999\.conf does not exist: VM 999 has no config on this node"),
    ("pve-running-vm", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}]}, running_vm,
     r"^refusing to change the config of VM 100: VM 100 runs as pid 777\. Stop the VM, or set allow_running=true"),
    ("pve-locked-vm", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}]},
     write(VM_CONF, CONF + "lock: backup\n", "/%s has lock: backup" % VM_CONF), r"^VM 100 is locked \(lock: backup\)"),
    ("pve-slot-taken", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00", "index": 0}]},
     hostpci("0000:03:01.0,pcie=1"),
     r"^hostpci0 already holds '0000:03:01\.0,pcie=1'; free it or choose another index$"),
    ("pve-index-twice", proxmox_hostpci,
     {"vmid": 100, "devices": [{"host": "01:00.0", "index": 1}, {"host": "03:01.0", "index": 1}]}, None,
     r"^index 1 is requested for two devices$"),
    ("pve-index-out-of-range", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00", "index": 16}]}, None,
     r"^index 16 is out of range: hostpci0 to hostpci15$"),
    ("pve-device-twice", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}, {"host": "0000:01:00.1"}]},
     None, r"^PCI device 0000:01:00\.1 is requested twice \(also as 0000:01:00\)$"),
    ("pve-malformed-address", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "gpu0"}]}, None,
     r"^'gpu0' is not a PCI id like 0000:01:00\.0, 01:00\.0 or 01:00 \(whole slot\)$"),
    ("pve-unquoted-yaml-address", proxmox_hostpci, {"vmid": 100, "devices": [{"host": 60.0}]}, None,
     r"^'60\.0' is not a PCI id .*YAML reads an unquoted 01:00\.0 as the number 60\.0"),
    ("pve-host-and-mapping", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00", "mapping": "gpu"}]},
     None, r"parameters are mutually exclusive: host\|mapping found in devices"),
    ("pve-bad-mapping-name", proxmox_hostpci, {"vmid": 100, "devices": [{"mapping": "my gpu"}]}, None,
     r"^mapping 'my gpu' is not a resource mapping name$"),
    ("pve-pcie-on-i440fx", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}], "machine": "pc"}, None,
     r"^hostpci0 use pcie=1, which needs machine: q35 \(the config has pc\); set machine: q35$"),
    ("pve-bad-hostpci-option", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}]},
     hostpci("0000:03:01.0,rombar"), r"^cannot read '0000:03:01\.0,rombar': 'rombar' has no '='$"),
    ("pve-key-twice-in-config", proxmox_hostpci, {"vmid": 100, "devices": [{"host": "01:00"}]},
     hostpci("0000:03:01.0", "0000:03:02.0"),
     r"^key 'hostpci0' appears 2 times in the current config; not editing an ambiguous file$"),
    ("pve-machine-with-line-break", proxmox_hostpci, {"vmid": 100, "machine": "q35\nlock: migrate"}, None,
     r"^machine 'q35\\nlock: migrate' is not a Proxmox VE machine type like q35"),
    ("pve-machine-unknown", proxmox_hostpci, {"vmid": 100, "machine": "i440"}, None,
     r"^machine 'i440' is not a Proxmox VE machine type"),
    ("pve-mmio-not-positive", proxmox_hostpci, {"vmid": 100, "mmio_mb": 0}, None,
     r"^mmio_mb must be a positive number of MiB, not 0$"),
    ("pve-bad-hugepages", proxmox_hostpci, {"vmid": 100, "hugepages": "4"}, None,
     r"value of hugepages must be one of: 2, 1024, any, got: 4"),
    # libvirt_passthrough: only what is refused before virsh is asked anything
    ("virt-malformed-address", libvirt_passthrough, {"name": "guest", "hostdevs": ["1:0.0"]}, None,
     r"^'1:0\.0' is not a PCI address like 0000:01:00\.0$"),
    ("virt-unknown-address", libvirt_passthrough, {"name": "guest", "hostdevs": ["0000:07:00.0"]}, None,
     r"^0000:07:00\.0 is not a PCI device on this host \(no /sys/bus/pci/devices/0000:07:00\.0\)$"),
    ("virt-unquoted-yaml-address", libvirt_passthrough, {"name": "guest", "hostdevs": [181.0]}, None,
     r"^'181\.0' is not a PCI address .*YAML reads an unquoted 03:01\.0 as the number 181\.0"),
    ("virt-all-functions-without-sysfs", libvirt_passthrough,
     {"name": "guest", "hostdevs": ["0000:01:00.0"], "all_functions": True}, remove("sys/bus"),
     r"^all_functions: cannot list PCI devices in \S+/sys/bus/pci/devices: No such file or directory$"),
    ("virt-pin-offline-cpu", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"0": "2", "1": "4-5"}}, None,
     r"^pinning names host CPU\(s\) 4,5, not online on this host \(online: 0-3\)$"),
    ("virt-pin-malformed-cpuset", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"0": "2-"}}, None,
     r"^malformed cpuset '2-'"),
    ("virt-pin-range-goes-down", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"0": "3-1"}}, None,
     r"^malformed cpuset '3-1': range 3-1 goes down$"),
    ("virt-pin-names-no-cpu", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"0": "1,^1"}}, None,
     r"^cpuset '1,\^1' names no CPU$"),
    ("virt-pin-key-not-a-vcpu", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"first": "1"}}, None,
     r"^vcpu_pins keys are vCPU numbers, not 'first'$"),
    # host_config: a bad value in any part, next to good values in the others, changes nothing
    ("host-nothing-to-manage", host_config, {}, None, r"^nothing to manage: set hugepages, kernel_args or vfio$"),
    ("host-dirty-group-next-to-good-pages", host_config,
     {"hugepages": {"count": 4}, "kernel_args": {}, "vfio": {"devices": ["0000:03:01.0"]}}, None,
     r"IOMMU group 9 is not isolated"),
    ("host-pages-beyond-memory-next-to-a-good-gpu", host_config,
     {"hugepages": {"size": "1G", "count": 2}, "kernel_args": {}, "vfio": {"devices": ["01:00.0"]}}, None,
     r"but this host has 1\.9 GiB of memory"),
    ("host-unclosed-grub-quote-next-to-a-good-gpu", host_config, {"kernel_args": {}, "vfio": {"devices": ["01:00.0"]}},
     write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet splash\n'),
     r"GRUB_CMDLINE_LINUX_DEFAULT.* opens a double quote it does not close on the same line"),
    ("host-huge-page-argument-in-kernel-args", host_config,
     {"hugepages": {"count": 4}, "kernel_args": {"args": ["hugepages=8"]}}, None,
     r"^the kernel arguments hugepages=8 are the huge pages' own"),
    ("host-iommu-none-and-no-args", host_config, {"kernel_args": {"iommu": "none"}, "hugepages": {"count": 4}}, None,
     r"^nothing to manage in kernel_args: args is empty and iommu is none$"),
    ("virt-pin-negative-vcpu", libvirt_passthrough, {"name": "guest", "vcpu_pins": {"-1": "1"}}, None,
     r"^vcpu_pins: vCPU -1 is negative$"),
    ("virt-emulator-cpuset-malformed", libvirt_passthrough, {"name": "guest", "emulator_cpuset": "all"}, None,
     r"^malformed cpuset 'all'"),
    ("virt-hugepage-size-without-hugepages", libvirt_passthrough, {"name": "guest", "hugepage_size": "1G"}, None,
     r"^hugepage_size needs hugepages=true$"),
    ("virt-hyperv-vendor-too-long", libvirt_passthrough, {"name": "guest", "hyperv_vendor_id": "0123456789abc"},
     None, r"^hyperv_vendor_id '0123456789abc': at most 12 printable characters, no spaces$"),
    ("virt-mmio-negative", libvirt_passthrough, {"name": "guest", "mmio64_mb": -1}, None,
     r"^mmio64_mb must be 0 \(remove\) or a size in MiB$"),
]


@pytest.fixture
def commands(monkeypatch):
    """Every command a module asks to run; a refusal must ask none."""
    ran = []

    def run_command(self, argv, *args, **kwargs):
        ran.append(list(argv) if isinstance(argv, (list, tuple)) else argv)
        return 1, "", "bad-input matrix: no command may run"

    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    # Present, so a refusal cannot be a missing program standing in for the check under test.
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/bin/" + name)
    return ran


# Refusals that exist only because root is not /: run off-host only.
OFF_HOST_ONLY = ("args-grubby-off-host",)
RUNS = [case[1:] + (live,) for case in CASES for live in (False, True) if not (live and case[0] in OFF_HOST_ONLY)]
RUN_IDS = ["%s-%s" % (case[0], "live" if live else "off-host")
           for case in CASES for live in (False, True) if not (live and case[0] in OFF_HOST_ONLY)]


@pytest.mark.parametrize("module, args, setup, message, live", RUNS, ids=RUN_IDS)
def test_refused_with_a_clear_message_and_nothing_changed(tree, run_module, commands, monkeypatch,
                                                          module, args, setup, message, live):
    """``live``: the module takes the tree for this host's own / (every path it uses is still under
    root), so the branches that rebind, write sysfs and run commands are reached too if a check fails."""
    if live:
        monkeypatch.setattr(_argspec, "root_is_live", lambda root: True)
    build_host(tree)
    if setup:
        setup(tree)
    args = dict(args)
    args["root"] = tree.root + args["root"][1:] if str(args.get("root", "")).startswith("@") else tree.root
    before = fingerprint(tree.root)
    code, result = run_module(module, args)
    assert code == 1 and result.get("failed") is True, result
    assert result.get("changed") is not True, result
    assert re.search(message, result["msg"]), result["msg"]
    assert differences(before, fingerprint(tree.root)) == []
    assert commands == []


def test_the_matrix_covers_every_linux_module():
    assert len(CASES) >= 30 and len(set(case[0] for case in CASES)) == len(CASES)
    modules = set(case[1] for case in CASES)
    assert modules == {iommu_facts, gpu_facts, vfio_bind, iommu_kernel_args, hugepages, proxmox_hostpci,
                       libvirt_passthrough, host_config}


def test_the_checks_can_fail(tree, run_module, commands, monkeypatch):
    """The same harness on good inputs sees the writes and the command, so a refusal's clean
    fingerprint and empty command list mean something."""
    build_host(tree)
    before = fingerprint(tree.root)
    code, result = run_module(hugepages, {"root": tree.root, "count": 1})
    assert code == 0 and result["changed"] is True
    assert "added etc/sysctl.d/80-passthrough-gpu-hugepages.conf" in differences(before, fingerprint(tree.root))
    code, result = run_module(libvirt_passthrough, {"root": tree.root, "name": "guest", "hugepages": True})
    assert code == 1 and "bad-input matrix: no command may run" in result["msg"]
    assert commands == [["/usr/bin/virsh", "-c", "qemu:///system", "domstate", "guest"]]
    monkeypatch.setattr(_argspec, "root_is_live", lambda root: True)
    before = fingerprint(tree.root)
    code, result = run_module(hugepages, {"root": tree.root, "count": 2})
    assert code == 0 and result["changed"] is True
    changed = [line.split(":")[0] for line in differences(before, fingerprint(tree.root))]
    assert "changed sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages" in changed  # the live runtime write


def test_libvirt_refuses_bad_pins_before_looking_for_virsh(tree, run_module, commands, monkeypatch):
    """On a host without virsh the pinning mistake is still the message, not the missing program."""
    build_host(tree)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: self.fail_json(msg="no %s here" % name))
    code, result = run_module(libvirt_passthrough, {"root": tree.root, "name": "guest", "vcpu_pins": {"0": "7"}})
    assert code == 1 and result["msg"] == "pinning names host CPU(s) 7, not online on this host (online: 0-3)"
    code, result = run_module(libvirt_passthrough, {"root": tree.root, "name": "guest", "vcpu_pins": {"0": "3"}})
    assert code == 1 and result["msg"] == "no virsh here" and commands == []


def test_every_case_is_on_the_docs_page():
    """docs/bad_inputs.md shows each row (tests/unit/matrix/render_table.py prints them)."""
    page = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "bad_inputs.md")
    with open(page) as handle:
        text = handle.read()
    assert [case[0] for case in CASES if "| `%s` |" % case[0] not in text] == []
