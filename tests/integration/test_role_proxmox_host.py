# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/proxmox_host on a synthetic Proxmox root with connection local: no VM, a few seconds.

The tree is the lab's PCI layout (tests/unit/sysfs_tree.py) plus Proxmox paths: a systemd-boot
install synced by proxmox-boot-tool (/etc/kernel/proxmox-boot-uuids, /etc/kernel/cmdline) and a
VM config. With proxmox_host_root not "/", nothing touches this machine's kernel, no command
runs, and no reboot happens even with proxmox_host_reboot_ok. Check, apply, check, apply: the
recap's changed count each time.
"""

import os
import re
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


def test_role_on_synthetic_root(tmp_path):
    root = tmp_path / "root"
    tree = SysfsTree(str(root)).lab()
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: fpu vmx\n")
    tree.write("etc/kernel/proxmox-boot-uuids", "1234-ABCD\n")
    tree.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    tree.write("usr/sbin/proxmox-boot-tool", "#!/bin/sh\n")
    tree.write("etc/initramfs-tools/modules", "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "#!/bin/sh\n")
    tree.write("etc/pve/qemu-server/100.conf", CONF)
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(root=root))
    counts = []
    for check in (True, False, True, False):
        proc = run_playbook(str(playbook), extra_args=["--check"] if check else [], timeout=600)
        counts.append(_changed(proc))
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
