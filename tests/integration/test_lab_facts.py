# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The facts modules on the lab VM (real kernel, real intel-iommu) against what the VM itself says.

Every expected value comes from the VM at test time (lspci -vvnn, /sys/kernel/iommu_groups),
never from numbers typed here.
"""

import os
import subprocess

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _rom

import lspci
from helpers import REPO, ansible_module

GIB = 1 << 30
BRIDGE_CLASSES = ("0604", "0607", "0609")


def slot(address):
    return address.rsplit(".", 1)[0]


@pytest.fixture(scope="module")
def truth(lab):
    devices = lspci.parse(lab.ssh("lspci -D -vvnn"))
    listing = lab.ssh("find /sys/kernel/iommu_groups -mindepth 3 -maxdepth 3")
    groups = {}
    for path in listing.split():
        parts = path.split("/")
        groups.setdefault(int(parts[4]), []).append(parts[6])
    assert devices and groups, "the lab VM shows no devices or no IOMMU groups"
    return devices, dict((g, sorted(m)) for g, m in groups.items())


@pytest.fixture(scope="module")
def iommu(lab):
    return ansible_module("lab", "passthrough.gpu.iommu_facts", env=lab.env)["ansible_facts"]["passthrough_iommu"]


@pytest.fixture(scope="module")
def gpus(lab):
    return ansible_module("lab", "passthrough.gpu.gpu_facts", {"check_rom": True}, env=lab.env)


def test_devices_match_lspci(iommu, truth):
    lspci.compare(iommu["devices"], truth[0])


def test_iommu_on_with_the_vms_groups(iommu, truth):
    assert iommu["enabled"] is True and iommu["vendor"] == "intel"
    assert dict((g["id"], g["devices"]) for g in iommu["groups"]) == truth[1]
    assert "intel_iommu" in iommu["iommu_args"]


def test_isolation_verdicts(iommu, truth):
    devices, groups = truth
    expected = {}
    for gid, members in groups.items():
        endpoints = [m for m in members if devices[m]["class"][:4] not in BRIDGE_CLASSES]
        expected[gid] = len(set(slot(m) for m in endpoints)) <= 1
    got = dict((g["id"], g["isolated"]) for g in iommu["groups"])
    assert got == expected
    shared = [g for g in iommu["groups"] if not g["isolated"]]
    assert shared, "the lab should have a group that is not isolated"
    for group in shared:
        named = " ".join(group["reasons"])
        assert all(m in named for m in group["devices"] if devices[m]["class"][:4] not in BRIDGE_CLASSES)


def test_large_bar_is_real_and_above_4g(iommu, truth):
    devices = truth[0]
    large = [(a, i, b) for a, d in devices.items() for i, b in d["bars"].items()
             if b["is_64bit"] and b["prefetchable"] and b["size_bytes"] >= 16 * GIB]
    assert len(large) == 1, "the lab should have one 16 GiB-class 64-bit prefetchable BAR"
    address, index, region = large[0]
    got = [b for b in iommu["devices"][address]["bars"] if b["index"] == index][0]
    assert got["size_bytes"] == region["size_bytes"] and got["start"] == region["start"]
    assert got["above_4g"] is True and region["start"] >= 4 * GIB
    group = [g for g in iommu["groups"] if g["id"] == iommu["devices"][address]["iommu_group"]][0]
    assert group["isolated"] is True, group


def test_gpu_facts_on_the_lab(gpus, truth):
    devices = truth[0]
    by_address = dict((g["address"], g) for g in gpus["ansible_facts"]["passthrough_gpus"])
    expected = sorted(a for a, d in devices.items() if d["class"].startswith("03"))
    assert sorted(by_address) == expected
    lspci.compare(by_address, dict((a, devices[a]) for a in expected))
    console = [g for g in by_address.values() if g["boot_vga"]]
    assert len(console) == 1 and console[0]["ready"] is False
    big = [g for g in by_address.values() if g["bar_total_64bit_prefetchable_bytes"] >= 16 * GIB][0]
    total = sum(b["size_bytes"] for a in [big["address"]] + big["companions"]
                for b in devices[a]["bars"].values() if b["is_64bit"])
    size = big["mmio"]["esxi_64bit_mmio_size_gb"] * GIB
    assert big["mmio"]["rule"] == "bars" and size >= total and size & (size - 1) == 0
    assert big["bars_above_4g"] is True and big["isolated"] is True and big["ready"] is True
    assert big["companions"] == sorted(a for a in devices if slot(a) == slot(big["address"]) and a != big["address"])


def test_roms_as_the_vm_reads_them(lab, gpus):
    """Each GPU's ROM as the module saw it equals the bytes read by hand in the VM."""
    seen = set()
    for gpu in gpus["ansible_facts"]["passthrough_gpus"]:
        rom = "/sys/bus/pci/devices/%s/rom" % gpu["address"]
        data = lab.ssh("echo 1 > %s; cat %s > /tmp/rom.bin; rc=$?; echo 0 > %s; [ $rc -eq 0 ] && cat /tmp/rom.bin"
                       " || true" % (rom, rom, rom), binary=True)
        if data:
            assert gpu["rom"] == _rom.parse_rom(data), gpu["address"]
        else:
            # The console GPU's ROM on UEFI points at the legacy 0xC0000 shadow: the kernel says EIO.
            assert gpu["rom"]["has_uefi"] is None and "cannot read the ROM" in gpu["rom"]["error"]
        seen.add(gpu["rom"]["has_uefi"])
    assert seen == {True, False, None}, "the lab has a UEFI ROM, a legacy-only ROM and an unreadable one"
    assert "cannot read the ROM of 0000:00:01.0" in gpus["_output"]


def test_copy_of_the_lab_sysfs_gives_the_same_facts(lab, tmp_path):
    with open(os.path.join(REPO, "tools", "sysfs_snapshot.py"), "rb") as tool:
        lab.ssh("python3 - /tmp/lab-sysfs && tar -C /tmp/lab-sysfs -cf /tmp/lab-sysfs.tar .", stdin=tool)
    data = lab.ssh("cat /tmp/lab-sysfs.tar", binary=True)
    (tmp_path / "root").mkdir()
    subprocess.run(["tar", "-C", str(tmp_path / "root"), "-xf", "-"], input=data, check=True)
    copy = ansible_module("localhost", "passthrough.gpu.gpu_facts", {"root": str(tmp_path / "root")})
    live = ansible_module("lab", "passthrough.gpu.gpu_facts", env=lab.env)
    assert copy["ansible_facts"]["passthrough_gpus"] == live["ansible_facts"]["passthrough_gpus"]
    assert copy["summary"] == live["summary"]
