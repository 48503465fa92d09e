# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/proxmox_host on a synthetic Proxmox root with connection local: no VM, a few seconds.

The tree is the lab's PCI layout (tests/unit/sysfs_tree.py) plus Proxmox paths: a systemd-boot
install synced by proxmox-boot-tool (/etc/kernel/proxmox-boot-uuids, /etc/kernel/cmdline) and a
VM config. With proxmox_host_root not "/", nothing touches this machine's kernel, no command
runs, and no reboot happens even with proxmox_host_reboot_ok. Check, apply, check, apply: the
recap's changed count each time.
"""

import json
import os
import re
import shutil
import sys

from helpers import REPO, run_playbook

sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from sysfs_tree import SysfsTree  # noqa: E402  pylint: disable=wrong-import-position

CONF = """#VM with a GPU
boot: order=scsi0
cores: 4
efidisk0: local-lvm:vm-100-disk-1,efitype=4m,size=4M
memory: 8192
name: gpu-guest
scsi0: local-lvm:vm-100-disk-0,size=32G

[clean]
cores: 4
memory: 8192
snaptime: 1700000000
"""

PLAY = """- name: Proxmox host on a synthetic root
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: passthrough.gpu.proxmox_host
      vars:
        proxmox_host_root: {root}
        proxmox_host_kernel_version: 6.1.0-50-amd64
        proxmox_host_gpus: ["0000:01:00.0"]
        proxmox_host_reboot_ok: true
        proxmox_host_vms:
          - vmid: 100
            devices: [{{host: "0000:01:00", x_vga: true}}]
            options: {{machine: q35, bios: ovmf, numa: true, mmio_mb: 32768}}
  post_tasks:
    - name: Report
      ansible.builtin.debug:
        msg: "reboot_required={{{{ proxmox_host_reboot_required }}}}"
"""


def _changed(proc):
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return int(re.search(r"localhost\s*:.*changed=(\d+)", proc.stdout).group(1))


def proxmox_tree(root):
    """The lab's PCI layout with an Intel IOMMU on, UEFI boot and Proxmox's paths."""
    tree = SysfsTree(str(root)).lab()
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx\n")
    tree.write("sys/firmware/efi/fw_platform_size", "64\n")
    tree.write("sys/firmware/acpi/tables/DMAR", "DMAR")
    tree.write("proc/meminfo", "MemTotal:       16393216 kB\nHugepagesize:       2048 kB\n")
    tree.write("etc/kernel/proxmox-boot-uuids", "1234-ABCD\n")
    tree.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    tree.write("usr/sbin/proxmox-boot-tool", "#!/bin/sh\n")
    tree.write("etc/initramfs-tools/modules", "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "#!/bin/sh\n")
    tree.write("etc/pve/qemu-server/100.conf", CONF)
    return tree


def test_role_on_synthetic_root(tmp_path):
    root = tmp_path / "root"
    tree = proxmox_tree(root)
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(root=root))
    counts = []
    for check in (True, False, True, False):
        before = tree.snapshot()
        proc = run_playbook(str(playbook), extra_args=(["--check"] if check else []) + ["--diff"], timeout=600)
        counts.append(_changed(proc))
        written = set(re.findall(r"\+\+\+ after: \S*?(/etc/\S+)", proc.stdout))
        if check:
            assert tree.snapshot() == before, "check mode wrote to the tree"
        if not counts[-1]:
            assert not written, written  # a run that changes nothing shows no diff
        elif check:
            # The diff names what the real run writes: the kernel command line, the VM config.
            assert {"/etc/kernel/cmdline", "/etc/pve/qemu-server/100.conf"} <= written, written
        if not check:
            assert "reboot_required=True" in proc.stdout  # said, not done: root is not /
    assert counts[0] > 0 and counts[1] == counts[0] and counts[2:] == [0, 0], counts
    assert open(tree.path("etc/kernel/cmdline")).read() == \
        "root=ZFS=rpool/ROOT/pve-1 boot=zfs intel_iommu=on iommu=pt\n"
    assert open(tree.path("etc/modules")).read() == "vfio\nvfio_iommu_type1\nvfio_pci\nvfio_virqfd\n"
    conf = open(tree.path("etc/pve/qemu-server/100.conf")).read()
    assert conf.startswith("#VM with a GPU\n") and conf.endswith("\n[clean]\ncores: 4\nmemory: 8192\nsnaptime: 1700000000\n")
    for line in ("hostpci0: 0000:01:00,pcie=1,x-vga=1", "machine: q35", "bios: ovmf", "numa: 1",
                 "args: -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=32768"):
        assert line in conf.split("\n")


# The preflight refuses before the first change: each case one inventory host with its own tree.
REFUSALS = [
    ("running_vm", {}, "refusing to change the config of VM 100: VM 100 runs as pid 777"),
    ("no_config", {}, "100.conf"),
    ("no_uefi", {}, "the host did not boot through UEFI"),
    (None, {"proxmox_host_gpus": ["0000:00:01.0"]}, "proxmox_host_force_console_gpu"),
    (None, {"proxmox_host_gpus": ["03:01.0"]}, "proxmox_host_allow_shared_group: true"),
    (None, {"proxmox_host_gpus": ["10de:2204"]}, "proxmox_host_gpus: no PCI device has the id 10de:2204"),
    ("iommu_off_no_table", {}, "the IOMMU is off and the firmware shows none"),
    (None, {"proxmox_host_hugepages_count": 100000}, "asked for 195.3 GiB of huge pages"),
]


def iommu_off(tree, table=True):
    os.unlink(tree.path("sys/class/iommu/dmar0"))
    shutil.rmtree(tree.path("sys/kernel/iommu_groups"))
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.5.13-6-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs")
    if not table:
        os.unlink(tree.path("sys/firmware/acpi/tables/DMAR"))


def _run_all(tmp_path, cases, common, play_name="refusals", check=False):
    hosts, trees = {}, {}
    for name, (tree, role_vars) in cases.items():
        trees[name] = (tree, tree.snapshot())
        hosts[name] = dict({"ansible_connection": "local", "proxmox_host_root": tree.root,
                            "ansible_python_interpreter": sys.executable}, **role_vars)
    inventory = tmp_path / (play_name + ".json")
    # Group vars, not extra vars: those would override each case's own.
    inventory.write_text(json.dumps({"all": {"hosts": hosts, "vars": common}}))
    play = [{"name": "proxmox_host", "hosts": "all", "gather_facts": False,
             "roles": ["passthrough.gpu.proxmox_host"],
             "post_tasks": [{"name": "Report", "ansible.builtin.debug": {
                 "msg": "reboot_required={{ proxmox_host_reboot_required }}"}}]}]
    (tmp_path / (play_name + ".yml")).write_text(json.dumps(play))
    return run_playbook(str(tmp_path / (play_name + ".yml")), inventory=str(inventory), timeout=600,
                        extra_args=["-f", "8"] + (["--check"] if check else [])), trees


COMMON = {"proxmox_host_kernel_version": "6.1.0-50-amd64", "proxmox_host_gpus": ["0000:01:00.0"],
          "proxmox_host_hugepages_count": 64, "proxmox_host_reboot_ok": True,
          "proxmox_host_vms": [{"vmid": 100, "devices": [{"host": "0000:01:00", "x_vga": True}],
                                "options": {"machine": "q35", "bios": "ovmf"}}]}


def test_refusals_change_nothing(tmp_path):
    cases = {}
    for index, (change, role_vars, _message) in enumerate(REFUSALS):
        tree = proxmox_tree(tmp_path / ("host%d" % index))
        if change == "running_vm":
            tree.write("run/qemu-server/100.pid", "777\n")
            tree.write("proc/777/cmdline", "/usr/bin/kvm\0-pidfile\0/var/run/qemu-server/100.pid\0")
        elif change == "no_config":
            os.unlink(tree.path("etc/pve/qemu-server/100.conf"))
        elif change == "no_uefi":
            os.unlink(tree.path("sys/firmware/efi/fw_platform_size"))
        elif change == "iommu_off_no_table":
            iommu_off(tree, table=False)
        cases["case%d" % index] = (tree, role_vars)
    proc, trees = _run_all(tmp_path, cases, COMMON)
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    # A plain task's failure is "fatal: [host]", a loop item's "failed: [host] (item=...)".
    failures = {part.split("]", 1)[0]: part for part in re.split(r"(?:fatal|failed): \[", output)[1:]}
    for index, (_change, _vars, message) in enumerate(REFUSALS):
        assert message in failures.get("case%d" % index, ""), "case %d: %s" % (index, output[-4000:])
        tree, before = trees["case%d" % index]
        assert tree.snapshot() == before, "case %d changed its tree" % index


def test_iommu_off_configures_everything_but_the_binding(tmp_path):
    """A Proxmox kernel before 6.8 on Intel: the IOMMU is off, the firmware has one (DMAR).

    The role must not refuse: kernel arguments, /etc/modules, huge pages and the VM config are
    written, binding waits for the IOMMU, and a reboot is due (root is not /, so none happens).
    The second run is a no-op: nothing more can be done before that reboot.
    """
    tree = proxmox_tree(tmp_path / "host")
    iommu_off(tree)
    counts = []
    for check in (True, False, False):
        proc, _trees = _run_all(tmp_path, {"pve": (tree, {})}, COMMON, play_name="pending", check=check)
        assert proc.returncode == 0, proc.stdout[-6000:]
        counts.append(int(re.search(r"pve\s*:.*changed=(\d+)", proc.stdout).group(1)))
        assert "reboot_required=True" in proc.stdout
    assert counts[0] > 0 and counts[1] == counts[0] and counts[2] == 0, counts
    assert "intel_iommu=on" in open(tree.path("etc/kernel/cmdline")).read()
    assert "hostpci0: 0000:01:00,pcie=1,x-vga=1" in open(tree.path("etc/pve/qemu-server/100.conf")).read()
    assert not os.path.exists(tree.path("etc/modprobe.d/passthrough-gpu-vfio.conf"))
    assert "the GPUs are bound to vfio-pci at the first run after it" in " ".join(proc.stdout.split())
