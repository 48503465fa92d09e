# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build sysfs/procfs trees in a temporary directory, laid out as the kernel lays them out."""

import os

# Flags of real resource lines (include/linux/ioport.h plus IORESOURCE_SIZEALIGN).
MEM32 = 0x40200
MEM32_PREF = 0x42208
MEM64 = 0x140204
MEM64_PREF = 0x14220C
IO = 0x40101
RESOURCE_LINES = 13


def bar_line(start, size, flags):
    return (start, start + size - 1, flags)


class SysfsTree:
    def __init__(self, root):
        self.root = root

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, rel, text):
        full = self.path(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as handle:
            handle.write(text)

    def link(self, rel, target):
        full = self.path(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        os.symlink(target, full)

    def cmdline(self, text):
        self.write("proc/cmdline", text + "\n")

    def iommu_unit(self, name, kind="intel-iommu"):
        self.link("sys/class/iommu/" + name, "../../devices/virtual/iommu/" + name)
        os.makedirs(self.path("sys/devices/virtual/iommu", name, kind))

    def device(self, address, vendor="10de", device="2204", klass="030000", driver=None,
               group=None, resources=(), parents=(), boot_vga=None, numa=-1, reset=None,
               revision="a1", subsystem=("1458", "403b")):
        """Add one PCI function; ``resources`` maps line index to (start, end, flags)."""
        top = parents[0] if parents else address
        rel = "/".join(["devices", "pci%s:%s" % (top[:4], top[5:7])] + list(parents) + [address])
        base = "sys/" + rel
        self.link("sys/bus/pci/devices/" + address, "../../../" + rel)
        lines = ["0x%016x 0x%016x 0x%016x" % (0, 0, 0)] * RESOURCE_LINES
        for index, (start, end, flags) in dict(resources).items():
            lines[index] = "0x%016x 0x%016x 0x%016x" % (start, end, flags)
        self.write(base + "/resource", "\n".join(lines) + "\n")
        files = {"vendor": "0x" + vendor, "device": "0x" + device, "class": "0x" + klass,
                 "revision": "0x" + revision, "numa_node": str(numa)}
        if subsystem:
            files["subsystem_vendor"] = "0x" + subsystem[0]
            files["subsystem_device"] = "0x" + subsystem[1]
        if boot_vga is not None:
            files["boot_vga"] = "1" if boot_vga else "0"
        if reset is not None:
            files["reset_method"] = reset
        for name, value in files.items():
            self.write(base + "/" + name, value + "\n")
        depth = "../" * (rel.count("/") + 1)
        if driver:
            self.link(base + "/driver", depth + "bus/pci/drivers/" + driver)
        if group is not None:
            self.link(base + "/iommu_group", depth + "kernel/iommu_groups/%d" % group)
            self.link("sys/kernel/iommu_groups/%d/devices/%s" % (group, address),
                      "../../../../devices/" + rel[len("devices/"):])
        return base

    def workstation(self):
        """A typical desktop: console iGPU, a dGPU with HDMI audio behind a root port, and a
        dirty chipset group (USB + SATA share one)."""
        self.iommu_unit("dmar0")
        self.cmdline("BOOT_IMAGE=/vmlinuz-6.1.0 root=UUID=1 ro quiet intel_iommu=on iommu=pt")
        self.device("0000:00:00.0", vendor="8086", device="3e30", klass="060000", group=0)
        self.device("0000:00:02.0", vendor="8086", device="3e92", klass="030000", driver="i915",
                    group=1, boot_vga=True, resources={0: bar_line(0xA0000000, 16 << 20, MEM64),
                                                       2: bar_line(0x90000000, 256 << 20, MEM64_PREF)})
        self.device("0000:00:01.0", vendor="8086", device="1901", klass="060400",
                    driver="pcieport", group=2)
        self.device("0000:01:00.0", driver="nvidia", group=2, parents=["0000:00:01.0"],
                    boot_vga=False, numa=0, reset="bus",
                    resources={0: bar_line(0xDE000000, 16 << 20, MEM32),
                               1: bar_line(0x4000000000, 16 << 30, MEM64_PREF),
                               3: bar_line(0x4400000000, 32 << 20, MEM64_PREF),
                               5: bar_line(0xE000, 128, IO),
                               6: bar_line(0xDF000000, 512 << 10, 0x46200)})
        self.device("0000:01:00.1", device="1aef", klass="040300", driver="snd_hda_intel",
                    group=2, parents=["0000:00:01.0"], resources={0: bar_line(0xDF080000, 16 << 10, MEM32)})
        self.device("0000:00:14.0", vendor="8086", device="a36d", klass="0c0330", driver="xhci_hcd",
                    group=3, resources={0: bar_line(0xA1200000, 64 << 10, MEM64)})
        self.device("0000:00:17.0", vendor="8086", device="a352", klass="010601", driver="ahci",
                    group=3, resources={5: bar_line(0xA1233000, 2 << 10, MEM32)})
        return self
