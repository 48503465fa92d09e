# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""PCI expansion ROM images (PCI Firmware Specification 3.x, "PCI Expansion ROM").

A ROM is a chain of images, each starting 0x55 0xAA with a pointer at 0x18 to
its "PCIR" data structure, which holds the image length, the code type
(0 x86 BIOS, 3 UEFI) and a last-image flag. A GPU whose ROM has no UEFI image
cannot show a picture under OVMF before its guest driver loads.
"""

from __future__ import absolute_import, division, print_function

import os
import struct

__metaclass__ = type

CODE_TYPES = {0: "x86", 1: "open_firmware", 2: "hp_pa_risc", 3: "efi"}
EFI_MACHINES = {0x014C: "ia32", 0x0200: "ia64", 0x0EBC: "ebc", 0x8664: "x64", 0xAA64: "aarch64"}
IMAGE_UNIT = 512
MAX_IMAGES = 16


class RomError(Exception):
    """A ROM that cannot be read or parsed."""


def parse_rom(data):
    """Images of an expansion ROM: code type, length, ids; stops at the last one."""
    images = []
    offset = 0
    while offset + 0x1A <= len(data) and len(images) < MAX_IMAGES:
        if data[offset:offset + 2] != b"\x55\xaa":
            if not images:
                raise RomError("no ROM signature 55 AA at offset 0")
            break
        pcir = offset + struct.unpack_from("<H", data, offset + 0x18)[0]
        if pcir + 0x18 > len(data) or data[pcir:pcir + 4] != b"PCIR":
            raise RomError("image at 0x%x has no PCIR data structure" % offset)
        vendor, device = struct.unpack_from("<HH", data, pcir + 4)
        length = struct.unpack_from("<H", data, pcir + 0x10)[0] * IMAGE_UNIT
        code_type = data[pcir + 0x14]
        last = bool(data[pcir + 0x15] & 0x80)
        image = {
            "offset": offset,
            "length_bytes": length,
            "vendor_id": "%04x" % vendor,
            "device_id": "%04x" % device,
            "code_type": CODE_TYPES.get(code_type, "0x%02x" % code_type),
        }
        if code_type == 3 and offset + 0x0C <= len(data):
            machine = struct.unpack_from("<H", data, offset + 0x0A)[0]
            image["efi_machine"] = EFI_MACHINES.get(machine, "0x%04x" % machine)
        images.append(image)
        if last or length == 0:
            break
        offset += length
    if not images:
        raise RomError("no ROM signature 55 AA at offset 0 (%d bytes read)" % len(data))
    return {"images": images, "has_uefi": any(i["code_type"] == "efi" for i in images)}


def read_rom(root, address):
    """Read a device's ROM through sysfs: enable with "1", read, always write "0" back."""
    path = os.path.join(root, "sys/bus/pci/devices", address, "rom")
    if not os.path.exists(path):
        raise RomError("%s has no rom file in sysfs" % address)
    try:
        with open(path, "w") as handle:
            handle.write("1")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        finally:
            with open(path, "w") as handle:
                handle.write("0")
    except (IOError, OSError) as exc:
        raise RomError("cannot read the ROM of %s: %s" % (address, exc))
    return parse_rom(data)
