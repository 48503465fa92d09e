# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _hugepages
from ansible_collections.passthrough.gpu.plugins.modules import hugepages

GRUB = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'


@pytest.fixture
def host(tree):
    tree.write("proc/meminfo", "MemTotal:        2005196 kB\nHugepagesize:       2048 kB\n")
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: fpu pse pdpe1gb\n")
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro quiet")
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       2005196 kB\n")
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "")
    return tree


@pytest.mark.parametrize("params, written", [
    ({"size": "2M", "memory": "1G"}, {_hugepages.SYSCTL_FILE: _hugepages.sysctl_text(512)}),
    ({"size": "1G", "count": 1, "mount_path": "/dev/hugepages1G"},
     {"etc/default/grub": 'GRUB_CMDLINE_LINUX_DEFAULT="quiet default_hugepagesz=1G hugepagesz=1G hugepages=1"\n',
      "etc/systemd/system/dev-hugepages1G.mount": _hugepages.mount_unit_text("/dev/hugepages1G", "1G")}),
])
def test_check_apply_check_apply(host, run_module, params, written):
    args = dict(params, root=host.root, _ansible_diff=True)
    before = host.snapshot()
    code, result = run_module(hugepages, dict(args, _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True
    assert host.snapshot() == before  # check mode: content and mtime unchanged
    assert sorted(d["after_header"] for d in result["diff"]) == sorted("/" + p for p in written)
    code, applied = run_module(hugepages, args)
    assert code == 0 and applied["changed"] is True
    for rel, text in written.items():
        assert open(host.path(rel)).read() == text
    for mode in (True, False):
        code, again = run_module(hugepages, dict(args, _ansible_check_mode=mode))
        assert code == 0 and again["changed"] is False and again["diff"] == []
    # root is not /: runtime is skipped and said so
    assert applied["pages"] == {} and any("runtime pages not set" in w for w in applied["warnings"])


def test_1g_result(host, run_module):
    code, result = run_module(hugepages, {"root": host.root, "size": "1G", "count": 1, "runtime": False})
    assert code == 0 and result["persistent_via"] == "kernel_args" and result["bootloader"] == "grub"
    assert result["reboot_required"] is True and result["commands_skipped"] == [["update-grub"]]
    assert result["args"] == ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=1"]
    assert result["warnings"] == []


@pytest.mark.parametrize("params, message", [
    ({"size": "1G", "count": 2}, "but this host has 1.9 GiB of memory (MemTotal 2005196 kB)"),
    ({"count": 1, "nodes": [1]}, "NUMA node 1 does not exist (nodes: 0)"),
    ({"count": 1, "memory": "2M"}, "mutually exclusive"),
    ({}, "one of the following is required: count, memory"),
    ({"memory": "3M"}, "not a whole number of 2M pages"),
    ({"count": 1, "mount_path": "/x", "persistent": False}, "mount_path needs persistent=true"),
])
def test_refuses_before_changing_anything(host, run_module, params, message):
    before = host.snapshot()
    code, result = run_module(hugepages, dict(params, root=host.root))
    assert code == 1 and message in result["msg"]
    assert host.snapshot() == before
    assert not os.path.exists(host.path(_hugepages.SYSCTL_FILE))
