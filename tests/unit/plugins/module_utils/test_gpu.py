# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _gpu, _pci
from sysfs_tree import MEM32, MEM64_PREF, bar_line

GIB = 1 << 30


def gpus_by_address(root, **kwargs):
    return dict((g["address"], g) for g in _gpu.read_gpus(root, **kwargs)[1])


def test_finds_class_03_only_with_companions(tree):
    tree.workstation()
    gpus = gpus_by_address(tree.root)
    assert sorted(gpus) == ["0000:00:02.0", "0000:01:00.0"]
    dgpu = gpus["0000:01:00.0"]
    assert [f["address"] for f in dgpu["companion_functions"]] == ["0000:01:00.1"]
    assert dgpu["companion_functions"][0]["driver"] == "snd_hda_intel"


def test_dgpu_ready_and_sized(tree):
    tree.workstation()
    dgpu = gpus_by_address(tree.root)["0000:01:00.0"]
    assert dgpu["ready"] is True and dgpu["missing"] == [] and dgpu["isolated"] is True
    assert dgpu["bar_total_64bit_prefetchable_bytes"] == 16 * GIB + (32 << 20)
    assert dgpu["bars_above_4g"] is True and dgpu["bound_to_vfio"] is False
    assert dgpu["mmio"]["rule"] == "bars" and dgpu["mmio"]["esxi_64bit_mmio_size_gb"] == 32
    assert dgpu["mmio"]["needs_64bit_mmio"] is True
    assert dgpu["rom"] is None


def test_console_gpu_is_not_ready(tree):
    tree.workstation()
    igpu = gpus_by_address(tree.root)["0000:00:02.0"]
    assert igpu["ready"] is False and igpu["isolated"] is True
    assert any("console GPU" in m for m in igpu["missing"])
    assert igpu["bars_above_4g"] is False


def test_dirty_group_names_the_neighbours(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:03:00.0", group=9, resources={1: bar_line(0x6000000000, 8 * GIB, MEM64_PREF)})
    tree.device("0000:03:01.0", vendor="8086", device="100e", klass="020000", driver="e1000", group=9)
    gpu = gpus_by_address(tree.root)["0000:03:00.0"]
    assert gpu["isolated"] is False and gpu["ready"] is False
    assert gpu["missing"] == [
        "IOMMU group 9 is shared with 0000:03:01.0 [8086:100e] class 020000: pass those through too, "
        "move the card to another slot, or find firmware with ACS"]


def test_iommu_off_and_unassigned_bar(tree):
    tree.device("0000:01:00.0", driver="nvidia", resources={
        0: bar_line(0xDE000000, 16 << 20, MEM32), 1: (0, (16 * GIB) - 1, MEM64_PREF | 0x20000000)})
    gpu = gpus_by_address(tree.root)["0000:01:00.0"]
    assert gpu["ready"] is False
    assert gpu["missing"][0].startswith("IOMMU is off")
    assert any("Above 4G decoding" in m for m in gpu["missing"])


def test_all_functions_on_vfio(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:01:00.0", driver="vfio-pci", group=1)
    tree.device("0000:01:00.1", klass="040300", driver="vfio-pci", group=1)
    assert gpus_by_address(tree.root)["0000:01:00.0"]["bound_to_vfio"] is True


@pytest.mark.parametrize("rom, ready, missing", [
    ({"images": [{"code_type": "x86"}], "has_uefi": False}, False, "no UEFI image"),
    ({"images": [{"code_type": "efi"}], "has_uefi": True}, True, None),
    ({"images": [], "has_uefi": None, "error": "cannot read"}, True, None),
])
def test_rom_verdicts(tree, rom, ready, missing):
    tree.workstation()
    iommu = _pci.read_iommu(tree.root)
    gpus = _gpu.describe_gpus(iommu, rom_reader=lambda address: rom)
    dgpu = [g for g in gpus if g["address"] == "0000:01:00.0"][0]
    assert dgpu["rom"] == rom and dgpu["ready"] is ready
    if missing:
        assert missing in " ".join(dgpu["missing"])


def test_summary_says_what_matters(tree):
    tree.workstation()
    iommu, gpus = _gpu.read_gpus(tree.root)
    text = "\n".join(_gpu.summary_lines(iommu, gpus))
    assert "IOMMU: on (intel)" in text
    assert "GPU 0000:01:00.0 [10de:2204] class 030000" in text
    assert "BAR1: 16 GiB mem, 64-bit, prefetchable at 0x4000000000" in text
    assert "ESXi pciPassthru.64bitMMIOSizeGB=32 (bars rule; the count rule gives 32)" in text
    assert "64-bit BARs total 272 MiB, under 16 GiB: no 64-bit MMIO setting needed" in text
    assert "GPU 0000:00:02.0 [8086:3e92] class 030000 (console GPU)" in text
    assert "companions: 0000:01:00.1 (snd_hda_intel)" in text


def test_summary_without_gpus(tree):
    tree.device("0000:00:03.0", klass="020000")
    iommu, gpus = _gpu.read_gpus(tree.root)
    assert _gpu.summary_lines(iommu, gpus) == ["IOMMU: OFF", "GPUs: none found (no PCI device of the chosen classes)"]


@pytest.mark.parametrize("size, text", [
    (16 << 30, "16 GiB"), (256 << 20, "256 MiB"), (128, "128 B"), (1 << 40, "1 TiB"),
    (3 << 29, "1536 MiB"), ((3 << 29) + 5, "1.5 GiB"), (16 << 10, "16 KiB")])
def test_human_size(size, text):
    assert _gpu.human_size(size) == text


@pytest.mark.parametrize("classes, expected", [
    (["03"], ("03",)), (["0x0302", "12"], ("0302", "12")), ([" 0B40 "], ("0b40",)), (["050000"], ("050000",))])
def test_normalize_classes(classes, expected):
    assert _gpu.normalize_classes(classes) == expected


@pytest.mark.parametrize("classes, message", [
    (["3"], "'3' is not a PCI class prefix"), (["030"], "not a PCI class"), (["0x"], "not a PCI class"),
    (["gpu"], "not a PCI class"), (["03000000"], "not a PCI class"), ([], "device_classes is empty")])
def test_normalize_classes_refuses(classes, message):
    with pytest.raises(_gpu.GpuError, match=message):
        _gpu.normalize_classes(classes)


def test_extra_classes_count_as_gpus(tree):
    tree.workstation()
    tree.device("0000:05:00.0", vendor="1da3", device="1020", klass="120000", group=12)
    assert "0000:05:00.0" not in gpus_by_address(tree.root)
    assert "0000:05:00.0" in gpus_by_address(tree.root, classes=["03", "12"])
    assert sorted(gpus_by_address(tree.root, classes=["0302"])) == []


def test_summary_of_a_gpu_without_64bit_bars(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:03:00.0", group=4, resources={0: bar_line(0xC0000000, 16 << 20, MEM32)})
    iommu, gpus = _gpu.read_gpus(tree.root)
    assert "  MMIO: no 64-bit BARs: no 64-bit MMIO setting needed" in _gpu.summary_lines(iommu, gpus)
