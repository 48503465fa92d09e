# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""hugepages on the lab VM: 2M pages at runtime, then 1G pages from the kernel command line.

A 1G page needs one free, 1 GiB-aligned GiB of RAM at boot. With the lab's default 2 GiB, q35 puts
all RAM below 2 GiB and OVMF's reserved areas sit at the top of the 1-2 GiB range, so the kernel
says "HugeTLB: allocating 1 of page size 1.00 GiB failed" (measured). With 4 GiB the RAM above
4 GiB holds two such ranges, so this file's VM gets LAB_MEMORY=4096 (guest RAM is allocated on use).
"""

from helpers import run_target

LAB_MEMORY = 4096  # read by the lab fixture


def meminfo(lab):
    values = {}
    for line in lab.ssh("cat /proc/meminfo").splitlines():
        key, _sep, rest = line.partition(":")
        values[key] = int(rest.split()[0])
    return values


def test_2m_runtime_then_1g_after_reboot(lab, tmp_path):
    assert "pdpe1gb" in lab.ssh("grep -m1 ^flags /proc/cpuinfo").split(), "the lab CPU offers no 1G pages"
    assert meminfo(lab)["MemTotal"] > 3 * 1024 * 1024, "the lab VM did not get LAB_MEMORY=%s" % LAB_MEMORY
    assert meminfo(lab)["HugePages_Total"] == 0
    run_target(lab, "hugepages", tmp_path)
    after = meminfo(lab)
    assert after["Hugepagesize"] == 1048576 and after["HugePages_Total"] == 1
    assert "hugepages=1" in lab.ssh("cat /proc/cmdline").split()
    assert not lab.ssh("ls /etc/sysctl.d/").count("passthrough-gpu")  # the 2M sysctl file made way
