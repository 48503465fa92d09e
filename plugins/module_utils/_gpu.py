# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""GPUs (PCI class 03, or the classes asked for) with their companion functions, MMIO needs and readiness."""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _mmio, _pci, _rom

__metaclass__ = type

DEFAULT_CLASSES = ("03",)
CLASS_PREFIX_RE = re.compile(r"^[0-9a-f]{2}(?:[0-9a-f]{2}){0,2}$")
VFIO_DRIVER = "vfio-pci"


class GpuError(ValueError):
    """Arguments that cannot select GPUs."""


def normalize_classes(classes):
    """Class-code prefixes (2, 4 or 6 hex digits, optional 0x) in lowercase."""
    result = []
    for value in classes:
        text = str(value).strip().lower()
        if text.startswith("0x"):
            text = text[2:]
        if not CLASS_PREFIX_RE.match(text):
            raise GpuError("'%s' is not a PCI class prefix: use 2, 4 or 6 hex digits like '03', "
                           "'0302' or '1200', quoted in YAML" % value)
        result.append(text)
    if not result:
        raise GpuError("device_classes is empty: give at least one class prefix such as 03")
    return tuple(result)


def human_size(size):
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return "%d %s" % (size >> shift, unit)
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return "%.1f %s" % (size / float(1 << shift), unit)
    return "%d B" % size


def _missing(gpu, iommu_enabled, group, devices):
    """What stands between this GPU and a guest, in words a user can act on."""
    missing = []
    if not iommu_enabled:
        missing.append("IOMMU is off: enable VT-d/AMD-Vi in firmware and intel_iommu=on or "
                       "amd_iommu=on on the kernel command line")
    elif group is None:
        missing.append("the device has no IOMMU group")
    elif not group["isolated"]:
        mine = [gpu["address"]] + gpu["companions"]
        others = [_pci.describe(devices[a]) for a in group["devices"]
                  if a not in mine and a in devices and not devices[a]["is_bridge"]]
        missing.append("IOMMU group %d is shared with %s: pass those through too, move the card to "
                       "another slot, or find firmware with ACS" % (group["id"], ", ".join(others)))
    if gpu["boot_vga"]:
        missing.append("it is the console GPU (boot_vga): the host needs another display "
                       "adapter or a headless boot before it can give this one away")
    functions = [gpu] + gpu["companion_functions"]
    if any(not region["assigned"] for f in functions for region in f["bars"]):
        missing.append("a BAR is not assigned: enable Above 4G decoding (and Resizable BAR "
                       "support) in firmware")
    if gpu["rom"] is not None and gpu["rom"]["has_uefi"] is False:
        missing.append("its option ROM has no UEFI image: an OVMF guest shows no picture "
                       "from it before the guest driver loads")
    return missing


def describe_gpus(iommu, rom_reader=None, classes=DEFAULT_CLASSES):
    """The ``passthrough_gpus`` list from the ``passthrough_iommu`` data.

    ``classes`` are class-code prefixes that count as GPUs (display controllers by
    default). ``rom_reader(address)`` returns the parsed ROM; None skips the ROM check.
    """
    devices = iommu["devices"]
    groups = dict((g["id"], g) for g in iommu["groups"])
    gpus = []
    for address in sorted(devices):
        device = devices[address]
        if not (device["class"] or "").startswith(classes):
            continue
        gpu = dict(device)
        gpu["companion_functions"] = [devices[c] for c in device["companions"]]
        functions = [device] + gpu["companion_functions"]
        bar_sizes = [b["size_bytes"] for f in functions for b in f["bars"] if b["is_64bit"]]
        gpu["bar_total_64bit_prefetchable_bytes"] = sum(
            b["size_bytes"] for f in functions for b in f["bars"] if b["is_64bit"] and b["prefetchable"])
        gpu["bars_above_4g"] = any(b["above_4g"] for f in functions for b in f["bars"])
        gpu["mmio"] = _mmio.plan(bar_sizes, gpu_count=1)
        gpu["rom"] = rom_reader(address) if rom_reader else None
        group = groups.get(device["iommu_group"])
        gpu["isolated"] = bool(group and group["isolated"])
        gpu["bound_to_vfio"] = all(f["driver"] == VFIO_DRIVER for f in functions)
        gpu["missing"] = _missing(gpu, iommu["enabled"], group, devices)
        gpu["ready"] = not gpu["missing"]
        gpus.append(gpu)
    return gpus


def read_gpus(root, check_rom=False, classes=DEFAULT_CLASSES):
    """``(iommu facts, gpus)`` for a root; ROMs are read only when asked."""
    classes = normalize_classes(classes)
    iommu = _pci.read_iommu(root)

    def read_rom(address):
        if iommu["devices"][address]["rom_size_bytes"] is None:
            return {"images": [], "has_uefi": False}
        try:
            return _rom.read_rom(root, address)
        except _rom.RomError as exc:
            return {"images": [], "has_uefi": None, "error": str(exc)}

    return iommu, describe_gpus(iommu, read_rom if check_rom else None, classes)


def summary_lines(iommu, gpus):
    """A readable readiness summary of one host."""
    lines = ["IOMMU: %s" % ("on (%s)" % (iommu["vendor"] or "unknown") if iommu["enabled"] else "OFF")]
    if iommu["acs_override"]:
        lines.append("  warning: pcie_acs_override is set, isolation verdicts are weaker")
    if not gpus:
        lines.append("GPUs: none found (no PCI device of the chosen classes)")
    for gpu in gpus:
        lines.append("GPU %s [%s:%s] class %s%s" % (
            gpu["address"], gpu["vendor_id"], gpu["device_id"], gpu["class"],
            " (console GPU)" if gpu["boot_vga"] else ""))
        lines.append("  ready: %s" % ("yes" if gpu["ready"] else "no"))
        lines.append("  IOMMU group: %s, %s" % (
            gpu["iommu_group"], "isolated" if gpu["isolated"] else "NOT isolated"))
        pending = "" if gpu["bound_to_vfio"] else " (not yet on vfio-pci)"
        lines.append("  driver: %s%s" % (gpu["driver"] or "none", pending))
        if gpu["companions"]:
            lines.append("  companions: %s" % ", ".join(
                "%s (%s)" % (f["address"], f["driver"] or "no driver") for f in gpu["companion_functions"]))
        for region in gpu["bars"]:
            lines.append("  BAR%d: %s %s%s%s at 0x%x" % (
                region["index"], human_size(region["size_bytes"]), region["type"],
                ", 64-bit" if region["is_64bit"] else "", ", prefetchable" if region["prefetchable"] else "",
                region["start"]))
        mmio = gpu["mmio"]
        lines.append("  BARs above 4 GiB: %s" % ("yes" if gpu["bars_above_4g"] else "no"))
        if mmio["needs_64bit_mmio"]:
            lines.append("  MMIO: 64-bit MMIO needed: ESXi pciPassthru.64bitMMIOSizeGB=%d (%s rule; the count "
                         "rule gives %d), OVMF X-PciMmio64Mb=%d%s" % (
                             mmio["esxi_64bit_mmio_size_gb"], mmio["rule"], mmio["count_rule_gb"],
                             mmio["ovmf_x_pcimmio64mb"],
                             "" if mmio["ovmf_fw_cfg_needed"] else " (OVMF's default aperture suffices)"))
        else:
            total = mmio["bar_total_bytes"]
            lines.append("  MMIO: %s: no 64-bit MMIO setting needed" % (
                "64-bit BARs total %s, under 16 GiB" % human_size(total) if total else "no 64-bit BARs"))
        if gpu["rom"] is not None:
            has_uefi = gpu["rom"]["has_uefi"]
            lines.append("  option ROM UEFI image: %s" % (
                "unknown (%s)" % gpu["rom"]["error"] if has_uefi is None else "yes" if has_uefi else "no"))
        for item in gpu["missing"]:
            lines.append("  missing: %s" % item)
    return lines
