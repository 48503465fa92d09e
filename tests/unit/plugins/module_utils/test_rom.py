# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import struct

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _rom

# Real ROMs shipped by Debian's ipxe-qemu and seabios (installed with qemu-system-x86).
IPXE_E1000 = "/usr/lib/ipxe/qemu/efi-e1000.rom"
SEABIOS_VGA = "/usr/share/seabios/vgabios-stdvga.bin"


def image(code_type, last, units=1, vendor=0x10DE, device=0x2204, machine=0x8664):
    data = bytearray(units * 512)
    data[0:2] = b"\x55\xaa"
    struct.pack_into("<H", data, 0x0A, machine)
    struct.pack_into("<H", data, 0x18, 0x40)
    data[0x40:0x44] = b"PCIR"
    struct.pack_into("<HH", data, 0x44, vendor, device)
    struct.pack_into("<H", data, 0x50, units)
    data[0x54] = code_type
    data[0x55] = 0x80 if last else 0
    return bytes(data)


def test_real_combined_ipxe_rom():
    with open(IPXE_E1000, "rb") as handle:
        parsed = _rom.parse_rom(handle.read())
    assert [i["code_type"] for i in parsed["images"]] == ["x86", "efi"]
    assert parsed["images"][1]["efi_machine"] == "x64"
    assert parsed["images"][0]["vendor_id"] == "8086" and parsed["images"][0]["device_id"] == "100e"
    assert parsed["has_uefi"] is True


def test_real_legacy_vga_rom():
    with open(SEABIOS_VGA, "rb") as handle:
        parsed = _rom.parse_rom(handle.read())
    assert [i["code_type"] for i in parsed["images"]] == ["x86"]
    assert parsed["has_uefi"] is False


def test_chain_stops_at_last_image():
    data = image(0, last=False, units=2) + image(3, last=True) + image(0, last=True)
    parsed = _rom.parse_rom(data)
    assert [(i["offset"], i["code_type"]) for i in parsed["images"]] == [(0, "x86"), (1024, "efi")]


def test_unknown_code_type_is_shown_raw():
    assert _rom.parse_rom(image(0x70, last=True))["images"][0]["code_type"] == "0x70"


@pytest.mark.parametrize("data, message", [
    (b"\x00" * 1024, "no ROM signature"),
    (b"\xff" * 64, "no ROM signature"),
    (b"\x55\xaa" + b"\x00" * 0x16 + b"\xf0\x01" + b"\x00" * 32, "no PCIR"),
])
def test_bad_roms(data, message):
    with pytest.raises(_rom.RomError, match=message):
        _rom.parse_rom(data)


def test_read_rom_enables_and_disables(tmp_path):
    # A plain file stands in for sysfs: what the module writes last must be "0".
    rom = tmp_path / "sys/bus/pci/devices/0000:01:00.0/rom"
    rom.parent.mkdir(parents=True)
    rom.write_bytes(image(3, last=True))
    with pytest.raises(_rom.RomError, match="no ROM signature"):
        _rom.read_rom(str(tmp_path), "0000:01:00.0")  # the "1" written over the image
    assert rom.read_text() == "0"


def test_read_rom_without_rom_file(tmp_path):
    with pytest.raises(_rom.RomError, match="has no rom file"):
        _rom.read_rom(str(tmp_path), "0000:01:00.0")
