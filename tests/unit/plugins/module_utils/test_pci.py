# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _pci

GIB = 1 << 30


@pytest.mark.parametrize("line, expected", [
    # the lab's 16 GiB ivshmem BAR under OVMF
    ("0x000000e000000000 0x000000e3ffffffff 0x000000000014220c",
     {"start": 0xE000000000, "size_bytes": 16 * GIB, "type": "mem", "is_64bit": True,
      "prefetchable": True, "above_4g": True, "assigned": True}),
    ("0x00000000fd000000 0x00000000fdffffff 0x0000000000040200",
     {"size_bytes": 16 << 20, "type": "mem", "is_64bit": False, "prefetchable": False,
      "above_4g": False}),
    ("0x000000000000c000 0x000000000000c07f 0x0000000000040101",
     {"size_bytes": 128, "type": "io", "is_64bit": False, "prefetchable": False}),
    ("0x0000000000000000 0x000000000fffffff 0x000000002014220c",
     {"size_bytes": 256 << 20, "assigned": False}),
])
def test_decode_resource_line(line, expected):
    decoded = _pci.decode_resource_line(1, line)
    assert decoded["index"] == 1
    for key, value in expected.items():
        assert decoded[key] == value, key


@pytest.mark.parametrize("line", [
    "0x0000000000000000 0x0000000000000000 0x0000000000000000",
    "0x0000000000000000 0x0000000000000000 0x0000000000040200",
    "0x00000000fd000000 0x00000000fdffffff 0x0000000000000000",
])
def test_empty_resource_lines_are_skipped(line):
    assert _pci.decode_resource_line(0, line) is None


@pytest.mark.parametrize("line, message", [
    ("0x1 0x2", "is not 'start end flags'"),
    ("0x1 zz 0x200", "is not hexadecimal"),
    ("0x2000 0x1000 0x200", "ends before it starts"),
])
def test_bad_resource_lines(line, message):
    with pytest.raises(_pci.PciError, match=message):
        _pci.decode_resource_line(0, line)


def test_parse_resources_splits_bars_and_rom():
    zero = "0x0000000000000000 0x0000000000000000 0x0000000000000000"
    lines = [zero] * 13
    lines[1] = "0x0000004000000000 0x00000043ffffffff 0x000000000014220c"
    lines[6] = "0x00000000df000000 0x00000000df07ffff 0x0000000000046200"
    bars, rom = _pci.parse_resources("\n".join(lines))
    assert [b["index"] for b in bars] == [1]
    assert bars[0]["size_bytes"] == 16 * GIB
    assert rom == 512 << 10


@pytest.mark.parametrize("text, expected", [
    ("0000:01:00.0", "0000:01:00.0"),
    ("01:00.1", "0000:01:00.1"),
    ("0000:AF:1F.7", "0000:af:1f.7"),
    ("10000:00:02.0", "10000:00:02.0"),
])
def test_normalize_address(text, expected):
    assert _pci.normalize_address(text) == expected


@pytest.mark.parametrize("text", ["01:00", "0000:01:00.8", "0000:01:20.0", "10de:2204", "", "gpu0"])
def test_normalize_address_refuses(text):
    with pytest.raises(_pci.PciError, match="is not a PCI address"):
        _pci.normalize_address(text)


def test_read_device_fields(tree):
    tree.workstation()
    dev = _pci.read_device(tree.root, "0000:01:00.0")
    assert dev["vendor_id"] == "10de" and dev["device_id"] == "2204"
    assert dev["subsystem_vendor_id"] == "1458" and dev["subsystem_device_id"] == "403b"
    assert dev["class"] == "030000" and dev["revision"] == "a1"
    assert dev["driver"] == "nvidia" and dev["iommu_group"] == 2
    assert [(b["index"], b["size_bytes"], b["is_64bit"]) for b in dev["bars"]] == [
        (0, 16 << 20, False), (1, 16 * GIB, True), (3, 32 << 20, True), (5, 128, False)]
    assert dev["rom_size_bytes"] == 512 << 10
    assert dev["boot_vga"] is False and dev["numa_node"] == 0
    assert dev["reset_method"] == ["bus"]
    assert dev["upstream_bridges"] == ["0000:00:01.0"]
    assert dev["is_bridge"] is False


def test_optional_files_absent(tree):
    tree.device("0000:00:03.0", klass="020000", subsystem=None, numa=-1)
    dev = _pci.read_device(tree.root, "0000:00:03.0")
    assert dev["driver"] is None and dev["iommu_group"] is None
    assert dev["boot_vga"] is None and dev["numa_node"] is None and dev["reset_method"] is None
    assert dev["subsystem_vendor_id"] is None and dev["bars"] == []


def test_read_devices_companions_and_bridges(tree):
    tree.workstation()
    devices = _pci.read_devices(tree.root)
    assert sorted(devices) == ["0000:00:00.0", "0000:00:01.0", "0000:00:02.0", "0000:00:14.0",
                               "0000:00:17.0", "0000:01:00.0", "0000:01:00.1"]
    assert devices["0000:01:00.0"]["companions"] == ["0000:01:00.1"]
    assert devices["0000:01:00.1"]["companions"] == ["0000:01:00.0"]
    assert devices["0000:00:14.0"]["companions"] == []
    assert devices["0000:00:01.0"]["is_bridge"] is True
    assert devices["0000:00:00.0"]["is_bridge"] is False  # host bridges are type-0 endpoints


def test_group_verdicts(tree):
    tree.workstation()
    facts = _pci.read_iommu(tree.root)
    by_id = dict((g["id"], g) for g in facts["groups"])
    assert by_id[2]["devices"] == ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
    assert by_id[2]["isolated"] is True and by_id[2]["reasons"] == []
    assert by_id[3]["isolated"] is False
    assert by_id[3]["reasons"] == [
        "0000:00:14.0 [8086:a36d] class 0c0330 shares group 3 with 0000:00:17.0 [8086:a352] class 010601",
        "0000:00:17.0 [8086:a352] class 010601 shares group 3 with 0000:00:14.0 [8086:a36d] class 0c0330"]


def test_group_of_only_bridges_is_isolated(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:00:1c.0", klass="060400", group=7)
    tree.device("0000:00:1c.4", klass="060400", group=7)
    assert _pci.read_iommu(tree.root)["groups"] == [
        {"id": 7, "devices": ["0000:00:1c.0", "0000:00:1c.4"], "isolated": True, "reasons": []}]


def test_iommu_state_intel(tree):
    tree.workstation()
    facts = _pci.read_iommu(tree.root)
    assert facts["enabled"] is True and facts["vendor"] == "intel" and facts["units"] == ["dmar0"]
    assert facts["iommu_args"] == {"intel_iommu": "on", "iommu": "pt"}
    assert facts["acs_override"] is False and facts["warnings"] == []


def test_iommu_state_amd(tree):
    tree.iommu_unit("ivhd0", kind="amd-iommu")
    tree.cmdline("root=/dev/nvme0n1p2 amd_iommu=on")
    facts = _pci.read_iommu_units(tree.root)
    assert facts == (["ivhd0"], "amd")


def test_iommu_off_warns(tree):
    tree.device("0000:01:00.0", driver="nouveau")
    tree.cmdline("root=/dev/sda1 ro quiet")
    facts = _pci.read_iommu(tree.root)
    assert facts["enabled"] is False and facts["vendor"] is None and facts["groups"] == []
    assert "IOMMU is off" in facts["warnings"][0]


def test_acs_override_warns(tree):
    tree.workstation()
    tree.cmdline("ro intel_iommu=on pcie_acs_override=downstream,multifunction")
    facts = _pci.read_iommu(tree.root)
    assert facts["acs_override"] is True
    assert facts["iommu_args"]["pcie_acs_override"] == "downstream,multifunction"
    assert "pcie_acs_override" in facts["warnings"][0]


def test_missing_sysfs_is_a_clear_error(tmp_path):
    with pytest.raises(_pci.PciError, match="cannot list PCI devices in .*sys/bus/pci/devices"):
        _pci.read_iommu(str(tmp_path))


def test_read_device_of_a_missing_or_non_directory_address(tree):
    with pytest.raises(_pci.PciError, match="no PCI device 0000:09:00.0 under .*sys/bus/pci/devices"):
        _pci.read_device(tree.root, "0000:09:00.0")
    tree.write("sys/bus/pci/devices/0000:0a:00.0", "not a directory\n")
    with pytest.raises(_pci.PciError, match="no PCI device 0000:0a:00.0"):
        _pci.read_device(tree.root, "0000:0a:00.0")


def test_read_takes_a_long_file_whole_and_survives_odd_files(tmp_path):
    long_file = tmp_path / "long"
    text = "x" * (_pci.READ_SIZE * 2 + 7)
    long_file.write_text(text + "\n")
    assert _pci._read(str(long_file)) == text
    exact = tmp_path / "exact"
    exact.write_bytes(b"y" * _pci.READ_SIZE)
    assert _pci._read(str(exact)) == "y" * _pci.READ_SIZE
    odd = tmp_path / "odd"
    odd.write_bytes(b"\xff\xfe 0x10de\n")
    assert _pci._read(str(odd)) == "\ufffd\ufffd 0x10de"
    assert _pci._read(str(tmp_path / "absent"), "gone") == "gone"
    assert _pci._read(str(tmp_path), "a directory") == "a directory"


def test_broken_resource_names_the_device(tree):
    base = tree.device("0000:02:00.0")
    tree.write(base + "/resource", "garbage\n")
    with pytest.raises(_pci.PciError, match="0000:02:00.0: resource line 0"):
        _pci.read_devices(tree.root)


def test_reads_only(tree):
    tree.workstation()
    before = tree.snapshot()
    _pci.read_iommu(tree.root)
    assert tree.snapshot() == before


@pytest.mark.parametrize("number, written", [
    (60.0, "01:00.0"),    # 01:00.0 and 0000:01:00.0 unquoted
    (181.0, "03:01.0"),
    (120.1, "02:00.1"),
    (2.0, "00:02.0"),
    (600, "10:00"),       # a whole slot, as proxmox_hostpci takes it
    ("1159.7", "19:19.7"),
])
def test_an_address_yaml_read_as_a_number_is_explained(number, written):
    with pytest.raises(_pci.PciError) as refused:
        _pci.normalize_address(number)
    assert str(refused.value) == ("'%s' is not a PCI address like 0000:01:00.0 (YAML reads an unquoted %s "
                                  "as the number %s: quote PCI addresses)" % (number, written, number))


@pytest.mark.parametrize("text", ["1:0.0", "5", "42", "60.8", "6000.0", "1230.0", "gpu"])
def test_no_yaml_hint_where_yaml_cannot_have_made_the_number(text):
    assert _pci.yaml_number_hint(text) == ""
