# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _hugepages

MEMINFO = "MemTotal:        2005196 kB\nMemFree:         1800000 kB\nHugepagesize:       2048 kB\n"
GRUB = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'


def host(tree, nodes=(0,), memtotal_kb=2005196, flags="fpu pse pdpe1gb", default_kb=2048):
    tree.write("proc/meminfo", "MemTotal:        %d kB\nHugepagesize:       %d kB\n" % (memtotal_kb, default_kb))
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: %s\n" % flags)
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro quiet")
    tree.write("proc/sys/vm/drop_caches", "0\n")
    tree.write("proc/sys/vm/compact_memory", "")
    for kb in (2048, 1048576):
        tree.write("sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages" % kb, "0\n")
        for node in nodes:
            tree.write("sys/devices/system/node/node%d/hugepages/hugepages-%dkB/nr_hugepages" % (node, kb), "0\n")
    for node in nodes:
        tree.write("sys/devices/system/node/node%d/meminfo" % node,
                   "Node %d MemTotal:       %d kB\n" % (node, memtotal_kb // len(nodes)))
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "")
    return tree


@pytest.mark.parametrize("text, expected", [
    ("16G", 16 << 30), ("512M", 512 << 20), ("1GiB", 1 << 30), ("2 mb", 2 << 20), ("1T", 1 << 40), ("4096", 4096)])
def test_parse_memory(text, expected):
    assert _hugepages.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["16X", "-1G", "1.5G", "", "G"])
def test_parse_memory_refuses(text):
    with pytest.raises(_hugepages.HugepagesError, match="is not a size"):
        _hugepages.parse_memory(text)


@pytest.mark.parametrize("size, count, memory, expected", [
    ("2M", 10, None, 10), ("2M", None, "16G", 8192), ("1G", None, "16G", 16), ("2M", 0, None, 0)])
def test_page_count(size, count, memory, expected):
    assert _hugepages.page_count(size, count, memory) == expected


@pytest.mark.parametrize("size, count, memory, message", [
    ("1G", None, "1536M", "not a whole number of 1G pages"),
    ("2M", 1, "2M", "one of count or memory"), ("2M", None, None, "one of count or memory"),
    ("2M", -1, None, "must not be negative")])
def test_page_count_refuses(size, count, memory, message):
    with pytest.raises(_hugepages.HugepagesError, match=message):
        _hugepages.page_count(size, count, memory)


@pytest.mark.parametrize("size, count, nodes, message", [
    ("1G", 2, [], r"asked for 2 GiB of huge pages \(2 x 1G\) but this host has 1\.9 GiB of memory \(MemTotal 2005196 kB\)"),
    ("2M", 1000, [0, 1], "on each of 2 nodes"),
    ("2M", 10, [2], r"NUMA node 2 does not exist \(nodes: 0, 1\)"),
    ("2M", 600, [1], "on NUMA node 1 but it has"),
    ("2M", 1, [1, 0, 1], r"^nodes lists NUMA node 1 more than once$"),
])
def test_validate_refuses_more_than_there_is(tree, size, count, nodes, message):
    host(tree, nodes=(0, 1))
    with pytest.raises(_hugepages.HugepagesError, match=message):
        _hugepages.validate(tree.root, size, count, nodes)


def test_validate_1g_needs_pdpe1gb(tree):
    host(tree, flags="fpu pse")
    with pytest.raises(_hugepages.HugepagesError, match="no pdpe1gb"):
        _hugepages.validate(tree.root, "1G", 1, [])
    _hugepages.validate(tree.root, "2M", 1, [])


def test_targets(tree):
    host(tree, nodes=(0, 1))
    assert _hugepages.targets(tree.root, "1G", [1]) == {
        "node1": tree.path("sys/devices/system/node/node1/hugepages/hugepages-1048576kB/nr_hugepages")}
    assert _hugepages.targets(tree.root, "2M", []) == {
        "all": tree.path("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")}


class Kernel:
    """A kernel that finds only ``free`` pages until memory has been compacted ``needs`` times."""

    def __init__(self, free, needs=99):
        self.free, self.needs, self.compactions, self.writes = free, needs, 0, []

    def __call__(self, path, text):
        self.writes.append((os.path.basename(path), text.strip()))
        if path.endswith("compact_memory"):
            self.compactions += 1
            return
        if path.endswith("nr_hugepages"):
            asked = int(text)
            given = asked if self.compactions >= self.needs else min(asked, self.free)
            text = "%d\n" % given
        with open(path, "w") as handle:
            handle.write(text)


def test_runtime_allocates_and_rereads(tree):
    host(tree)
    kernel = Kernel(free=1000)
    pages = _hugepages.ensure_runtime(tree.root, "2M", 512, [], write=kernel)
    assert pages == {"all": {"before": 0, "requested": 512, "after": 512}}
    assert kernel.writes == [("nr_hugepages", "512")]


def test_runtime_compacts_and_retries_on_shortfall(tree):
    host(tree)
    kernel = Kernel(free=100, needs=2)
    pages = _hugepages.ensure_runtime(tree.root, "2M", 512, [0], write=kernel)
    assert pages["node0"]["after"] == 512
    assert kernel.writes == [("nr_hugepages", "512"), ("drop_caches", "3"), ("compact_memory", "1"),
                             ("nr_hugepages", "512"), ("drop_caches", "3"), ("compact_memory", "1"),
                             ("nr_hugepages", "512")]


def test_runtime_reports_what_the_kernel_gave_after_bounded_retries(tree):
    host(tree)
    kernel = Kernel(free=100)
    pages = _hugepages.ensure_runtime(tree.root, "2M", 512, [], write=kernel)
    assert pages["all"] == {"before": 0, "requested": 512, "after": 100}
    assert kernel.compactions == _hugepages.RETRIES
    assert "all: 100 of 512" in _hugepages.shortfall(pages, "2M")


def test_runtime_check_mode_writes_nothing(tree):
    host(tree)
    path = tree.path("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    mtime = os.stat(path).st_mtime_ns
    pages = _hugepages.ensure_runtime(tree.root, "2M", 64, [], check_mode=True, write=None)
    assert pages["all"] == {"before": 0, "requested": 64, "after": 64}
    assert open(path).read() == "0\n" and os.stat(path).st_mtime_ns == mtime


def test_runtime_unchanged_writes_nothing(tree):
    host(tree)
    tree.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "64\n")
    kernel = Kernel(free=1000)
    assert _hugepages.ensure_runtime(tree.root, "2M", 64, [], write=kernel)["all"]["after"] == 64
    assert kernel.writes == []


@pytest.mark.parametrize("size, count, nodes, expected", [
    ("1G", 4, [], ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=4"]),
    ("1G", 2, [0, 1], ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=0:2,1:2"]),
    ("2M", 512, [1], ["hugepagesz=2M", "hugepages=1:512"]),
])
def test_kernel_args(size, count, nodes, expected):
    assert _hugepages.kernel_args(size, count, nodes) == expected


def test_persistent_2m_is_a_sysctl_file(tree):
    host(tree)
    plan = _hugepages.plan_persistent(tree.root, "2M", 512, [])
    assert plan.bootloader is None and plan.all_commands == [] and not plan.reboot_required
    assert plan.files.after == {tree.path(_hugepages.SYSCTL_FILE): _hugepages.MANAGED + "vm.nr_hugepages = 512\n"}


def test_persistent_2m_sysctl_refused_when_default_size_is_1g(tree):
    host(tree, default_kb=1048576)
    with pytest.raises(_hugepages.HugepagesError, match="default huge page size here is 1048576 kB"):
        _hugepages.plan_persistent(tree.root, "2M", 512, [])


def test_persistent_1g_is_kernel_args_and_drops_our_sysctl_file(tree):
    host(tree)
    tree.write(_hugepages.SYSCTL_FILE, _hugepages.sysctl_text(10))
    plan = _hugepages.plan_persistent(tree.root, "1G", 1, [])
    assert plan.bootloader == "grub" and plan.reboot_required
    assert plan.all_commands == [["update-grub"]]
    assert plan.files.after[tree.path("etc/default/grub")] == (
        'GRUB_CMDLINE_LINUX_DEFAULT="quiet default_hugepagesz=1G hugepagesz=1G hugepages=1"\n')
    assert plan.files.after[tree.path(_hugepages.SYSCTL_FILE)] is None


def test_mount_unit_changes_run_systemctl_but_not_update_grub(tree):
    host(tree)
    tree.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="default_hugepagesz=1G hugepagesz=1G hugepages=1"\n')
    plan = _hugepages.plan_persistent(tree.root, "1G", 1, [], mount_path="/dev/hugepages1G")
    unit = tree.path("etc/systemd/system/dev-hugepages1G.mount")
    assert "Options=pagesize=1G\n" in plan.files.after[unit] and "Where=/dev/hugepages1G\n" in plan.files.after[unit]
    assert plan.all_commands == [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", "dev-hugepages1G.mount"]]


@pytest.mark.parametrize("path, unit", [
    ("/dev/hugepages1G", "dev-hugepages1G.mount"), ("/mnt/huge-1g/", "mnt-huge\\x2d1g.mount"),
    ("/srv/.hidden", "srv-.hidden.mount"), ("/", "-.mount")])
def test_mount_unit_name(path, unit):
    assert _hugepages.mount_unit_name(path) == unit


@pytest.mark.parametrize("path", ["relative", "/a b", "/x/../y", "/"])
def test_validate_mount_path(path):
    with pytest.raises(_hugepages.HugepagesError, match="mount_path must be"):
        _hugepages.validate_mount_path(path)


@pytest.mark.parametrize("path", ["/boot", "/var/", "/mnt", "/usr/local/huge", "/sys/fs/hugetlb", "/etc/x"])
def test_a_system_directory_is_never_a_mount_path(path):
    with pytest.raises(_hugepages.HugepagesError, match=r"is a system directory: a hugetlbfs mounted there would hide"):
        _hugepages.validate_mount_path(path)


@pytest.mark.parametrize("path", ["/dev/hugepages1G", "/dev/hugepages", "/mnt/huge-1g", "/srv/vm/huge"])
def test_mount_paths_of_their_own_are_fine(path):
    assert _hugepages.validate_mount_path(path) == path


def test_a_mount_unit_of_someone_else_or_a_full_directory_is_not_covered(tree):
    host(tree)
    tree.write("etc/systemd/system/srv-vm.mount", "[Mount]\nWhat=/dev/sdb1\nWhere=/srv/vm\n")
    with pytest.raises(_hugepages.HugepagesError, match=r"^/etc/systemd/system/srv-vm\.mount exists and was not "
                                                        r"written by passthrough\.gpu\.hugepages"):
        _hugepages.plan_persistent(tree.root, "2M", 1, [], mount_path="/srv/vm")
    tree.write("srv/images/disk.qcow2", "")
    with pytest.raises(_hugepages.HugepagesError, match=r"^mount_path /srv/images is a directory that is not empty"):
        _hugepages.plan_persistent(tree.root, "2M", 1, [], mount_path="/srv/images")
    # our own unit, with the hugetlbfs it mounted in use, is simply kept
    tree.write("etc/systemd/system/srv-images.mount", _hugepages.mount_unit_text("/srv/images", "2M"))
    plan = _hugepages.plan_persistent(tree.root, "2M", 1, [], mount_path="/srv/images")
    assert tree.path("etc/systemd/system/srv-images.mount") not in plan.files.changed_paths
