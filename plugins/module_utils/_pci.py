# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""PCI devices, IOMMU groups and IOMMU state read from sysfs under a root path.

Pure: no AnsibleModule, no writes. Every path is taken under ``root`` so the same
code reads the running machine (``/``) or a copied tree (tests, offline triage).
"""

from __future__ import absolute_import, division, print_function

import os
import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _cmdline

__metaclass__ = type

PCI_DEVICES = "sys/bus/pci/devices"
IOMMU_GROUPS = "sys/kernel/iommu_groups"
IOMMU_CLASS = "sys/class/iommu"

# include/linux/ioport.h
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_MEM_64 = 0x100000
IORESOURCE_DISABLED = 0x10000000
IORESOURCE_UNSET = 0x20000000

FOUR_GIB = 1 << 32
READ_SIZE = 65536
ROM_INDEX = 6

# vfio treats any non-type-0 header as an interconnect: PCI-PCI (0x0604),
# CardBus (0x0607) and semi-transparent PCI-PCI (0x0609) bridges.
BRIDGE_CLASSES = ("0604", "0607", "0609")

ADDRESS_RE = re.compile(
    r"^(?P<domain>[0-9a-f]{4,8}):(?P<bus>[0-9a-f]{2}):(?P<slot>[0-1][0-9a-f])\.(?P<function>[0-7])$"
)
# What YAML 1.1 (PyYAML, so Ansible) makes of an unquoted address whose parts are all decimal
# digits: base-60 numbers, 01:00.0 -> 60.0, 03:01.0 -> 181.0, 10:00 -> 600.
YAML_NUMBER_RE = re.compile(r"^(\d+)(?:\.(\d))?$")


class PciError(Exception):
    """A sysfs tree that cannot be read as PCI devices."""


def yaml_number_hint(text):
    """A sentence to add when ``text`` is what YAML made of an unquoted address, else ``""``.

    ``bb:ss[.f]`` with decimal digits is a base-60 number to YAML 1.1; ``bus * 60 + slot`` is
    undone with divmod since a slot is below 60. A leading domain (``0000:``) adds nothing.
    """
    match = YAML_NUMBER_RE.match(str(text).strip())
    if not match:
        return ""
    bus, slot = divmod(int(match.group(1)), 60)
    function = match.group(2)
    if bus > 99 or slot > 19 or (function is None and bus == 0) or (function is not None and function > "7"):
        return ""
    written = "%02d:%02d" % (bus, slot) + ("." + function if function is not None else "")
    return " (YAML reads an unquoted %s as the number %s: quote PCI addresses)" % (written, str(text).strip())


def normalize_address(text):
    """Return the canonical ``dddd:bb:ss.f`` form, adding domain 0000 when missing."""
    value = str(text).strip().lower()
    if re.match(r"^[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$", value):
        value = "0000:" + value
    if not ADDRESS_RE.match(value):
        raise PciError("'%s' is not a PCI address like 0000:01:00.0%s" % (text, yaml_number_hint(text)))
    return value


def slot_of(address):
    """The ``domain:bus:slot`` part shared by the functions of one device."""
    return address.rsplit(".", 1)[0]


def _read(path, default=None, folder=None):
    """A sysfs attribute's text, stripped, or ``default`` when it cannot be read.

    os.open/os.read, not open(): three system calls a file instead of seven (open() adds fstat,
    an isatty ioctl, lseek and a read at EOF), and a host's scan reads about ten files a function.
    A sysfs attribute is at most a page and comes whole in one read; a longer regular file
    (a copied tree) is read on until its end. ``folder``: an open directory ``path`` is relative to.
    """
    try:
        handle = os.open(path, os.O_RDONLY, dir_fd=folder)
    except OSError:
        return default
    try:
        chunks = [os.read(handle, READ_SIZE)]
        while len(chunks[-1]) == READ_SIZE:
            chunks.append(os.read(handle, READ_SIZE))
    except OSError:
        return default
    finally:
        os.close(handle)
    return b"".join(chunks).decode("utf-8", "replace").strip()


def link_name(path, folder=None):
    """Name a sysfs link points to (a driver, a group), or None when there is no link."""
    try:
        return os.path.basename(os.readlink(path, dir_fd=folder))
    except (IOError, OSError):
        return None


def _hex_id(text, digits):
    """sysfs ids read ``0x10de``; the contract wants bare lowercase hex of fixed width."""
    if text is None:
        return None
    try:
        return "%0*x" % (digits, int(text, 16))
    except ValueError:
        return None


def _int_or_none(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def decode_resource_line(index, line):
    """Decode one ``start end flags`` line of a sysfs ``resource`` file.

    Returns None for an empty slot (and for the upper half of a 64-bit BAR,
    which sysfs shows as zeros).
    """
    fields = line.split()
    if len(fields) != 3:
        raise PciError("resource line %d is not 'start end flags': %r" % (index, line))
    try:
        start, end, flags = (int(field, 16) for field in fields)
    except ValueError:
        raise PciError("resource line %d is not hexadecimal: %r" % (index, line))
    if flags == 0 or (start == 0 and end == 0):
        return None
    if end < start:
        raise PciError("resource line %d ends before it starts: %r" % (index, line))
    is_io = bool(flags & IORESOURCE_IO)
    return {
        "index": index,
        "start": start,
        "size_bytes": end - start + 1,
        "type": "io" if is_io else "mem",
        "is_64bit": bool(flags & IORESOURCE_MEM_64) and not is_io,
        "prefetchable": bool(flags & IORESOURCE_PREFETCH) and not is_io,
        "above_4g": start >= FOUR_GIB,
        "assigned": not flags & (IORESOURCE_UNSET | IORESOURCE_DISABLED),
    }


def parse_resources(text):
    """BARs 0-5 (non-empty) and the ROM size from the text of a ``resource`` file."""
    bars = []
    rom_size = None
    for index, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        decoded = decode_resource_line(index, line)
        if decoded is None:
            continue
        if index < ROM_INDEX:
            bars.append(decoded)
        elif index == ROM_INDEX:
            rom_size = decoded["size_bytes"]
    return bars, rom_size


def _upstream_bridges(root, address):
    """Addresses on the path from the root complex down to the device, nearest last.

    The ``sys/bus/pci/devices/<addr>`` link names the real path
    (``../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0``), which is enough
    even in a copied tree whose link targets are absent.
    """
    try:
        target = os.readlink(os.path.join(root, PCI_DEVICES, address))
    except (IOError, OSError):
        return []
    parts = [part for part in target.split("/") if ADDRESS_RE.match(part)]
    return parts[:-1]


def read_device(root, address):
    """Everything the collection needs about one PCI function."""
    base = os.path.join(root, PCI_DEVICES, address)
    try:
        # Its files are opened relative to the open directory: the kernel follows the
        # sys/bus/pci/devices link once per device, not once per file.
        folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        raise PciError("no PCI device %s under %s" % (address, os.path.join(root, PCI_DEVICES)))
    try:
        return _read_device_files(root, address, folder)
    finally:
        os.close(folder)


def _read_device_files(root, address, folder):
    def read(name):
        return _read(name, folder=folder)

    try:
        bars, rom_size = parse_resources(_read("resource", "", folder))
    except PciError as exc:
        raise PciError("%s: %s" % (address, exc))
    klass = _hex_id(read("class"), 6)
    boot_vga = read("boot_vga")
    numa = _int_or_none(read("numa_node"))
    reset = read("reset_method")
    return {
        "address": address,
        "vendor_id": _hex_id(read("vendor"), 4),
        "device_id": _hex_id(read("device"), 4),
        "subsystem_vendor_id": _hex_id(read("subsystem_vendor"), 4),
        "subsystem_device_id": _hex_id(read("subsystem_device"), 4),
        "class": klass,
        "revision": _hex_id(read("revision"), 2),
        "driver": link_name("driver", folder),
        "iommu_group": _int_or_none(link_name("iommu_group", folder)),
        "bars": bars,
        "rom_size_bytes": rom_size,
        "boot_vga": None if boot_vga is None else boot_vga == "1",
        "numa_node": numa if numa is not None and numa >= 0 else None,
        "reset_method": reset.split() if reset else None,
        "is_bridge": bool(klass) and klass[:4] in BRIDGE_CLASSES,
        "upstream_bridges": _upstream_bridges(root, address),
    }


def list_addresses(root):
    path = os.path.join(root, PCI_DEVICES)
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise PciError("cannot list PCI devices in %s: %s" % (path, exc.strerror or exc))
    return sorted(name for name in names if ADDRESS_RE.match(name))


def read_devices(root):
    """All PCI functions keyed by address, each with its companion functions."""
    devices = dict((address, read_device(root, address)) for address in list_addresses(root))
    by_slot = {}
    for address in devices:
        by_slot.setdefault(slot_of(address), []).append(address)
    for address, device in devices.items():
        device["companions"] = [other for other in by_slot[slot_of(address)] if other != address]
    return devices


def read_group_members(root):
    """``{group id: [addresses]}`` from sys/kernel/iommu_groups (empty when the IOMMU is off)."""
    path = os.path.join(root, IOMMU_GROUPS)
    groups = {}
    try:
        names = os.listdir(path)
    except OSError:
        return groups
    for name in names:
        if not name.isdigit():
            continue
        try:
            members = os.listdir(os.path.join(path, name, "devices"))
        except OSError:
            members = []
        groups[int(name)] = sorted(m for m in members if ADDRESS_RE.match(m))
    return groups


def describe(device):
    return "%s [%s:%s] class %s" % (
        device["address"], device["vendor_id"], device["device_id"], device["class"])


def group_verdict(group_id, members, devices):
    """Whether a group can be handed to a guest whole.

    Isolated when every endpoint in it is a function of one device (same
    domain:bus:slot); bridges stay with the host and do not count.
    """
    endpoints = [devices[a] for a in members if a in devices and not devices[a]["is_bridge"]]
    slots = sorted(set(slot_of(d["address"]) for d in endpoints))
    reasons = []
    if len(slots) > 1:
        for slot in slots:
            mine = [describe(d) for d in endpoints if slot_of(d["address"]) == slot]
            others = [describe(d) for d in endpoints if slot_of(d["address"]) != slot]
            reasons.append("%s shares group %d with %s" % (", ".join(mine), group_id, ", ".join(others)))
    return {"id": group_id, "devices": list(members), "isolated": len(slots) <= 1, "reasons": reasons}


def read_iommu_units(root):
    """IOMMU hardware units and the vendor they point to (intel, amd, or the raw name)."""
    path = os.path.join(root, IOMMU_CLASS)
    try:
        units = sorted(os.listdir(path))
    except OSError:
        units = []
    vendors = set()
    for unit in units:
        unit_dir = os.path.join(path, unit)
        if unit.startswith("dmar") or os.path.isdir(os.path.join(unit_dir, "intel-iommu")):
            vendors.add("intel")
        elif unit.startswith("ivhd") or os.path.isdir(os.path.join(unit_dir, "amd-iommu")):
            vendors.add("amd")
        else:
            vendors.add(unit.rstrip("0123456789") or unit)
    vendor = vendors.pop() if len(vendors) == 1 else (", ".join(sorted(vendors)) or None)
    return units, vendor


def read_iommu(root):
    """The ``passthrough_iommu`` fact: IOMMU state, groups with verdicts, devices."""
    devices = read_devices(root)
    members = read_group_members(root)
    units, vendor = read_iommu_units(root)
    cmdline = _read(os.path.join(root, "proc", "cmdline"), "")
    args = _cmdline.to_dict(_cmdline.split(cmdline))
    groups = [group_verdict(gid, members[gid], devices) for gid in sorted(members)]
    warnings = []
    acs_override = "pcie_acs_override" in args
    if acs_override:
        warnings.append(
            "pcie_acs_override is on the kernel command line: IOMMU groups are split by "
            "the kernel's word, not the hardware's, so 'isolated' verdicts are weaker.")
    enabled = bool(units) or bool(members)
    if not enabled:
        warnings.append(
            "The IOMMU is off: no IOMMU groups under %s. Enable VT-d/AMD-Vi in firmware "
            "and the IOMMU on the kernel command line." % os.path.join(root, IOMMU_GROUPS))
    return {
        "enabled": enabled,
        "vendor": vendor,
        "units": units,
        "cmdline": cmdline,
        "iommu_args": dict((k, v) for k, v in args.items() if k in _cmdline.IOMMU_KEYS),
        "acs_override": acs_override,
        "groups": groups,
        "devices": devices,
        "warnings": warnings,
    }
