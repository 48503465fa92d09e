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

    def snapshot(self):
        """Every entry under the tree: (content or link target, mtime_ns), for check-mode tests.

        Directories count by mtime (an added or removed file changes it); links are not followed.
        """
        state = {}
        for directory, dirs, files in os.walk(self.root):
            for name in dirs + files:
                full = os.path.join(directory, name)
                if os.path.islink(full):
                    what = os.readlink(full)
                elif os.path.isdir(full):
                    what = None
                else:
                    with open(full, "rb") as handle:
                        what = handle.read()
                state[os.path.relpath(full, self.root)] = (what, os.lstat(full).st_mtime_ns)
        return state

    def files_state(self, *rels):
        """``{rel: (text, mtime_ns) or None}``: what check-mode tests compare before and after."""
        state = {}
        for rel in rels:
            path = self.path(rel)
            state[rel] = (open(path).read(), os.stat(path).st_mtime_ns) if os.path.exists(path) else None
        return state

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

    def lab(self):
        """The lab VM's layout (tests/lab/README.md): console VGA, an isolated GPU + audio
        (group 8) and a group shared behind a PCI bridge (group 9)."""
        self.iommu_unit("dmar0")
        self.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-50-amd64 ro console=ttyS0,115200 intel_iommu=on")
        self.write("proc/sys/kernel/osrelease", "6.1.0-50-amd64\n")
        self.device("0000:00:00.0", vendor="8086", device="29c0", klass="060000", group=0)
        self.device("0000:00:01.0", vendor="1234", device="1111", klass="030000", driver="bochs-drm",
                    group=1, boot_vga=True)
        self.device("0000:00:02.0", vendor="1b36", device="000c", klass="060400", driver="pcieport", group=2)
        self.device("0000:01:00.0", vendor="1b36", device="0100", klass="038000", driver="qxl", group=8,
                    parents=["0000:00:02.0"], boot_vga=False,
                    resources={4: bar_line(0xE000000000, 16 << 30, MEM64_PREF)})
        self.device("0000:01:00.1", vendor="8086", device="293e", klass="040300", driver="snd_hda_intel",
                    group=8, parents=["0000:00:02.0"])
        self.device("0000:00:03.0", vendor="1b36", device="000c", klass="060400", driver="pcieport", group=3)
        self.device("0000:02:00.0", vendor="1b36", device="000e", klass="060400", group=9,
                    parents=["0000:00:03.0"])
        self.device("0000:03:01.0", vendor="1234", device="1111", klass="038000", driver="bochs-drm",
                    group=9, parents=["0000:00:03.0", "0000:02:00.0"], boot_vga=False)
        self.device("0000:03:02.0", vendor="8086", device="100e", klass="020000", driver="e1000",
                    group=9, parents=["0000:00:03.0", "0000:02:00.0"])
        return self


class FakeKernel:
    """A Host for _vfio/_vfio_runtime that acts on a SysfsTree the way the kernel would.

    ``native`` maps an address to the driver its IDs match; ``refuse`` holds (address, driver)
    pairs whose probe fails; ``loaded`` are the drivers registered now. Every write and command
    is recorded in order.
    """

    def __init__(self, tree, native, loaded=(), refuse=(), rebuild_rc=0):
        self.tree = tree
        self.native = dict(native)
        self.refuse = set(refuse)
        self.rebuild_rc = rebuild_rc
        self.writes = []
        self.commands = []
        self.sleeps = 0
        self.mover = None
        for driver in loaded:
            self.load(driver)
        for address in os.listdir(tree.path("sys/bus/pci/devices")):
            self.tree.write("sys/bus/pci/devices/%s/driver_override" % address, "(null)\n")

    def load(self, driver):
        module = driver.replace("-", "_")
        os.makedirs(self.tree.path("sys/bus/pci/drivers", driver), exist_ok=True)
        os.makedirs(self.tree.path("sys/module", module, "drivers", "pci:" + driver), exist_ok=True)

    def _dev(self, address, *rest):
        return self.tree.path("sys/bus/pci/devices", address, *rest)

    def driver(self, address):
        try:
            return os.path.basename(os.readlink(self._dev(address, "driver")))
        except OSError:
            return None

    def write(self, path, value):
        rel = os.path.relpath(path, self.tree.root)
        self.writes.append((rel, value))
        parts = rel.split("/")
        if rel == "sys/bus/pci/drivers_probe":
            self.probe(value)
        elif parts[-1] == "driver_override":
            with open(path, "w") as handle:
                handle.write((value.strip() or "(null)") + "\n")
        elif parts[-2:] == ["driver", "unbind"]:
            address = parts[4]
            if value != address or self.driver(address) is None:
                raise OSError(19, "No such device")
            os.unlink(self._dev(address, "driver"))
        else:
            raise OSError(13, "Permission denied")
        self.update_groups()

    def probe(self, address):
        if self.driver(address):
            return
        with open(self._dev(address, "driver_override")) as handle:
            override = handle.read().strip()
        driver = override if override != "(null)" else self.native.get(address)
        if driver and os.path.isdir(self.tree.path("sys/bus/pci/drivers", driver)) \
                and (address, driver) not in self.refuse:
            os.symlink(self.tree.path("sys/bus/pci/drivers", driver), self._dev(address, "driver"))

    def update_groups(self):
        groups = self.tree.path("sys/kernel/iommu_groups")
        for group in os.listdir(groups):
            members = os.listdir(os.path.join(groups, group, "devices"))
            node = self.tree.path("dev/vfio", group)
            if any(self.driver(m) == "vfio-pci" for m in members):
                os.makedirs(os.path.dirname(node), exist_ok=True)
                if not os.path.exists(node):
                    open(node, "w").close()
            elif os.path.exists(node):
                os.unlink(node)

    def run(self, argv, environ_update=None):
        self.commands.append(list(argv))
        name = os.path.basename(argv[0])
        if name == "modprobe":
            self.load({"vfio-pci": "vfio-pci"}.get(argv[1], argv[1]))
            return 0, "", ""
        if self.rebuild_rc:
            return self.rebuild_rc, "", "E: %s failed: no space left on device" % name
        return 0, "", ""

    def which(self, name):
        return "/usr/sbin/" + name

    def sleep(self, seconds):
        self.sleeps += 1
