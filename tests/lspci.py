# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse ``lspci -D -vvnn``: the independent ground truth the facts modules are checked against.

Written from lspci's output format, sharing nothing with the collection's sysfs reader.
"""

import re

HEADER = re.compile(
    r"^(?P<address>[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*?\[(?P<class>[0-9a-f]{4})\]: "
    r".*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]"
    r"(?: \(rev (?P<rev>[0-9a-f]{2})\))?(?: \(prog-if (?P<progif>[0-9a-f]{2})[^)]*\))?$")
MEMORY = re.compile(
    r"^\tRegion (?P<index>\d): Memory at (?P<start>[0-9a-f]+) \((?P<width>32|64)-bit, "
    r"(?P<pref>prefetchable|non-prefetchable)\)(?: \[disabled\])? \[size=(?P<size>\d+[KMGT]?)\]")
IO_PORTS = re.compile(
    r"^\tRegion (?P<index>\d): I/O ports at (?P<start>[0-9a-f]+)(?: \[disabled\])? \[size=(?P<size>\d+[KMGT]?)\]")
ROM = re.compile(r"^\tExpansion ROM at \S+(?: \[[a-z ]+\])* \[size=(?P<size>\d+[KMGT]?)\]")
SUBSYSTEM = re.compile(r"^\tSubsystem: .*\[(?P<vendor>[0-9a-f]{4}):(?P<device>[0-9a-f]{4})\]$")
DRIVER = re.compile(r"^\tKernel driver in use: (?P<driver>\S+)")
GROUP = re.compile(r"^\tIOMMU group: (?P<group>\d+)")
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(text):
    return int(text.rstrip("KMGT")) * UNITS[text[-1] if text[-1] in UNITS else ""]


def parse(text):
    """``{address: {vendor_id, device_id, class, revision, subsystem, driver, iommu_group, bars, rom}}``."""
    devices = {}
    current = None
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            current = {
                "vendor_id": header["vendor"], "device_id": header["device"],
                "class": header["class"] + (header["progif"] or "00"), "revision": header["rev"] or "00",
                "subsystem": None, "driver": None, "iommu_group": None, "bars": {}, "rom_size_bytes": None,
            }
            devices[header["address"]] = current
            continue
        if current is None:
            continue
        for pattern, kind in ((MEMORY, "mem"), (IO_PORTS, "io")):
            match = pattern.match(line)
            if match:
                current["bars"][int(match["index"])] = {
                    "type": kind, "start": int(match["start"], 16), "size_bytes": size(match["size"]),
                    "is_64bit": kind == "mem" and match["width"] == "64",
                    "prefetchable": kind == "mem" and match["pref"] == "prefetchable"}
        match = ROM.match(line)
        if match:
            current["rom_size_bytes"] = size(match["size"])
        match = SUBSYSTEM.match(line)
        if match:
            current["subsystem"] = (match["vendor"], match["device"])
        match = DRIVER.match(line)
        if match:
            current["driver"] = match["driver"]
        match = GROUP.match(line)
        if match:
            current["iommu_group"] = int(match["group"])
    return devices


def compare(devices, truth):
    """Every device lspci shows, with the fields lspci shows, as the module reported it."""
    assert sorted(devices) == sorted(truth), "device lists differ"
    for address, seen in truth.items():
        got = devices[address]
        where = "%s: " % address
        assert (got["vendor_id"], got["device_id"]) == (seen["vendor_id"], seen["device_id"]), where + "ids"
        assert got["class"] == seen["class"], where + "class"
        assert got["revision"] == seen["revision"], where + "revision"
        if seen["subsystem"]:
            assert (got["subsystem_vendor_id"], got["subsystem_device_id"]) == seen["subsystem"], where + "subsystem"
        assert got["driver"] == seen["driver"], where + "driver"
        if seen["iommu_group"] is not None:
            assert got["iommu_group"] == seen["iommu_group"], where + "iommu group"
        bars = dict((b["index"], b) for b in got["bars"])
        assert sorted(bars) == sorted(seen["bars"]), where + "BAR indexes"
        for index, region in seen["bars"].items():
            for key, value in region.items():
                assert bars[index][key] == value, where + "BAR%d %s" % (index, key)
        if seen["rom_size_bytes"] is not None:
            assert got["rom_size_bytes"] == seen["rom_size_bytes"], where + "ROM size"
