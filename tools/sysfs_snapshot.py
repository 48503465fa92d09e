# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy the parts of a machine's /sys and /proc that the facts modules read.

    python3 tools/sysfs_snapshot.py DEST [--root /]

DEST then works as ``root=DEST`` for passthrough.gpu.iommu_facts and gpu_facts:
offline triage of a user's host, and test trees captured from real kernels.
Only reads the source; links are copied as written, not followed.
"""

import argparse
import os
import shutil
import sys

DEVICE_FILES = (
    "vendor", "device", "subsystem_vendor", "subsystem_device", "class", "revision",
    "resource", "boot_vga", "numa_node", "reset_method",
)
DEVICE_LINKS = ("driver", "iommu_group")
PROC_FILES = ("proc/cmdline", "proc/cpuinfo")


def copy_link(src_root, dest_root, rel):
    dest = os.path.join(dest_root, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    if os.path.lexists(dest):
        os.unlink(dest)
    os.symlink(os.readlink(os.path.join(src_root, rel)), dest)


def copy_file(src_root, dest_root, rel):
    try:
        with open(os.path.join(src_root, rel), "rb") as handle:
            data = handle.read()
    except OSError:
        return
    dest = os.path.join(dest_root, rel)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "wb") as handle:
        handle.write(data)


def real_rel(src_root, rel):
    """Path of the directory a sysfs link points to, relative to the root."""
    return os.path.relpath(os.path.realpath(os.path.join(src_root, rel)), os.path.realpath(src_root))


def snapshot(src_root, dest_root):
    devices = "sys/bus/pci/devices"
    for name in sorted(os.listdir(os.path.join(src_root, devices))):
        rel = os.path.join(devices, name)
        copy_link(src_root, dest_root, rel)
        target = real_rel(src_root, rel)
        os.makedirs(os.path.join(dest_root, target), exist_ok=True)
        for item in DEVICE_FILES:
            copy_file(src_root, dest_root, os.path.join(target, item))
        for item in DEVICE_LINKS:
            if os.path.islink(os.path.join(src_root, target, item)):
                copy_link(src_root, dest_root, os.path.join(target, item))
    groups = "sys/kernel/iommu_groups"
    if os.path.isdir(os.path.join(src_root, groups)):
        os.makedirs(os.path.join(dest_root, groups), exist_ok=True)
        for group in os.listdir(os.path.join(src_root, groups)):
            members = os.path.join(groups, group, "devices")
            os.makedirs(os.path.join(dest_root, members), exist_ok=True)
            for member in os.listdir(os.path.join(src_root, members)):
                copy_link(src_root, dest_root, os.path.join(members, member))
    units = "sys/class/iommu"
    if os.path.isdir(os.path.join(src_root, units)):
        os.makedirs(os.path.join(dest_root, units), exist_ok=True)
        for unit in os.listdir(os.path.join(src_root, units)):
            rel = os.path.join(units, unit)
            copy_link(src_root, dest_root, rel)
            target = real_rel(src_root, rel)
            for kind in ("intel-iommu", "amd-iommu"):
                if os.path.isdir(os.path.join(src_root, target, kind)):
                    os.makedirs(os.path.join(dest_root, target, kind), exist_ok=True)
    for rel in PROC_FILES:
        copy_file(src_root, dest_root, rel)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", help="directory to create the copy in (replaced if it exists)")
    parser.add_argument("--root", default="/", help="machine root to copy from (default /)")
    args = parser.parse_args(argv)
    if os.path.exists(args.dest):
        shutil.rmtree(args.dest)
    snapshot(args.root, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
