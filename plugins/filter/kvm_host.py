# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection (used by roles/kvm_host): not a public API, may change without notice.
"""Decisions of the kvm_host role, kept out of Jinja so they can be read and tested.

Everything here runs on the controller from data the role gathered (the passthrough_iommu facts,
their ``platform`` included); nothing touches a host.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

from ansible_collections.passthrough.gpu.plugins.module_utils import _vfio  # noqa: E402

AMD_VENDOR = "1002"

PKG_MGR = {"Debian": "apt", "RedHat": "dnf", "Archlinux": "pacman"}


def _join(root, rel):
    return root.rstrip("/") + "/" + rel


def probe(platform):
    """iommu_facts' ``platform`` -> what the host has, with the package manager of its family."""
    probed = dict(platform or {})
    probed["pkg_mgr"] = PKG_MGR.get(probed.get("os_family"))
    return probed


def select(iommu, wanted, prefix="kvm_host"):
    """The devices the user named (addresses or vendor:device ids) -> records and problems.

    Each name goes through vfio_bind's own resolver, one at a time, so every bad name is reported.
    """
    devices = (iommu or {}).get("devices") or {}
    chosen, problems = [], []
    for item in wanted or []:
        try:
            found = _vfio.resolve([item], devices)
        except _vfio.VfioError as exc:
            text = "%s_gpus: %s" % (prefix, exc)
            if not isinstance(item, str):
                # Unquoted in YAML, 0000:01:00.0 is a base-60 number (60.0): say so.
                text += "; quote addresses in YAML"
            problems.append(text)
            continue
        chosen.extend(a for a in found if a not in chosen)
    return [devices[a] for a in chosen], problems


def preflight(iommu, probed, wanted, options):
    """Everything the role checks before changing anything.

    Returns ``{devices, addresses, amd_gpus, iommu_pending, problems, notes}``; the role fails on
    ``problems`` before its first change. ``iommu_pending``: the IOMMU is off now but firmware has
    one, so the kernel arguments turn it on at the next boot (groups can only be checked then).
    """
    options = options or {}
    # Refusals name the calling role's variables (kvm_host_..., proxmox_host_...).
    prefix = options.get("role") or "kvm_host"
    problems, notes = [], []
    if probed.get("cpu_virtualization") is None:
        problems.append("/proc/cpuinfo could not be read, so CPU virtualization (vmx or svm) is unknown")
    elif not probed.get("cpu_virtualization"):
        problems.append("the CPU shows no virtualization flag (vmx or svm in /proc/cpuinfo): turn on VT-x / AMD-V "
                        "(SVM) in the firmware setup")
    if not probed.get("uefi"):
        text = ("the host did not boot through UEFI (no /sys/firmware/efi): GPU passthrough needs the firmware's "
                "IOMMU and 'Above 4G decoding' settings, which legacy/CSM boot often hides")
        if options.get("require_uefi", True):
            problems.append(text + "; set %s_require_uefi: false to go on anyway" % prefix)
        else:
            notes.append(text)
    enabled = bool((iommu or {}).get("enabled"))
    pending = False
    if not enabled:
        if probed.get("firmware_iommu"):
            pending = True
            notes.append("the IOMMU is off now; the firmware has one (%s ACPI table), so the kernel arguments turn it "
                         "on at the next boot; IOMMU groups are checked after that boot"
                         % ("DMAR" if probed["firmware_iommu"] == "intel" else "IVRS"))
        else:
            problems.append("the IOMMU is off and the firmware shows none (no DMAR or IVRS ACPI table; run as root to "
                            "read them): turn on VT-d / AMD-Vi (IOMMU) in the firmware setup")
    if (iommu or {}).get("acs_override"):
        notes.append("pcie_acs_override is on the kernel command line: IOMMU groups are split by the kernel, not "
                     "by the hardware, and devices in them may still reach each other")
    devices, selection = select(iommu, wanted, prefix) if enabled else ([], [])
    problems.extend(selection)
    groups = {g["id"]: g for g in (iommu or {}).get("groups") or []}
    for dev in devices:
        label = "%s [%s:%s]" % (dev["address"], dev.get("vendor_id"), dev.get("device_id"))
        if dev.get("is_bridge"):
            problems.append("%s is a PCI bridge; name the device behind it" % label)
        if dev.get("boot_vga") and not options.get("force"):
            problems.append("%s is the console GPU (boot_vga): the host would lose its display; set "
                            "%s_force_console_gpu: true to take it anyway" % (label, prefix))
        group = groups.get(dev.get("iommu_group"))
        if group is not None and not group.get("isolated"):
            text = "%s: IOMMU group %s is not isolated (%s)" % (label, group["id"], "; ".join(group.get("reasons") or []))
            if options.get("allow_shared_group"):
                notes.append(text + "; going on because %s_allow_shared_group is true" % prefix)
            else:
                problems.append(text + ": move the card to another slot, or set %s_allow_shared_group: true "
                                "to give the whole group away" % prefix)
    if not wanted:
        candidates = [d["address"] for d in sorted(((iommu or {}).get("devices") or {}).values(), key=lambda d: d["address"])
                      if str(d.get("class") or "").startswith("03") and not d.get("boot_vga")]
        notes.append("%s_gpus is empty: the host gets its kernel arguments and huge pages, and no device is bound to "
                     "vfio-pci. Name the GPUs by address or vendor:device id to bind them; candidates: %s"
                     % (prefix, ", ".join(candidates) or "none"))
    if wanted and pending:
        notes.append("the GPUs (%s) are bound to vfio-pci after the IOMMU is on" % ", ".join(str(w) for w in wanted))
    amd = [{"address": d["address"], "vendor_id": d["vendor_id"], "device_id": d["device_id"]}
           for d in devices if d.get("vendor_id") == AMD_VENDOR and str(d.get("class", "")).startswith("03")]
    return {"devices": devices, "addresses": [d["address"] for d in devices], "amd_gpus": amd,
            "iommu_pending": pending, "problems": problems, "notes": notes}


def pools(lines, root):
    """``grep -H '' <pool files>`` output -> ``{label: pages}`` (``all`` or ``node<N>``)."""
    seen = {}
    for line in lines or []:
        path, _sep, value = line.rpartition(":")
        rel = path[len(root.rstrip("/")):]
        node = re.search(r"/node/node(\d+)/", rel)
        seen["node%s" % node.group(1) if node else "all"] = int(value) if value.strip().isdigit() else None
    return seen


def pages_after(pages):
    """hugepages' RV(pages) -> ``{label: pages the kernel gave}`` (re-read by the module)."""
    return {label: pool.get("after") for label, pool in (pages or {}).items()}


def pool_files(root, size, nodes):
    """The nr_hugepages files that hold the pool the role asked for."""
    kb = {"2M": 2048, "1G": 1048576}[size]
    if nodes:
        return [_join(root, "sys/devices/system/node/node%d/hugepages/hugepages-%dkB/nr_hugepages" % (n, kb))
                for n in nodes]
    return [_join(root, "sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages" % kb)]


def verify(iommu, expected):
    """What differs on the host (read fresh) from what the role configured.

    ``expected``: ``{addresses: [...], args: [...], pages: {label: count}, seen_pages: {label: count}}``.
    """
    problems = []
    devices = (iommu or {}).get("devices") or {}
    for address in expected.get("addresses") or []:
        driver = (devices.get(address) or {}).get("driver")
        if driver != "vfio-pci":
            problems.append("%s is on %s, not vfio-pci" % (address, driver or "no driver"))
    cmdline = ((iommu or {}).get("cmdline") or "").split()
    for arg in expected.get("args") or []:
        if arg not in cmdline:
            problems.append("%s is not on the running kernel's command line" % arg)
    seen = expected.get("seen_pages") or {}
    for label, count in sorted((expected.get("pages") or {}).items()):
        if label in seen and seen[label] != count:
            problems.append("hugepages %s: %s pages, not %d" % (label, seen[label], count))
    return problems


class FilterModule(object):
    def filters(self):
        return {
            "kvm_host_probe": probe,
            "kvm_host_preflight": preflight,
            "kvm_host_pool_files": pool_files,
            "kvm_host_pools": pools,
            "kvm_host_pages_after": pages_after,
            "kvm_host_verify": verify,
        }
