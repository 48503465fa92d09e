# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: readiness
short_description: GPU passthrough readiness of every host, from the collection's facts
version_added: 0.1.0
description:
  - Turns per-host records (the facts of M(passthrough.gpu.iommu_facts) and M(passthrough.gpu.gpu_facts),
    or the result of M(passthrough.gpu.esxi_passthrough_info)) into one report row per host and per GPU
    with a verdict, C(ready), C(pending) or C(blocked), and the reasons. C(playbooks/report.yml) renders
    it as HTML and Markdown; C(docs/report.md) lists the rules.
  - "Linux hosts (KVM, Proxmox VE): C(blocked) when the IOMMU is off, the GPU has no IOMMU group, its group
    holds endpoints of another device, it is the console GPU (C(boot_vga)), a BAR of it or its companions
    is not assigned, or the MMIO it needs is above O(max_mmio_gb). C(pending) when nothing blocks but the
    GPU or a companion function is not on C(vfio-pci) yet (bind pending). C(ready) otherwise."
  - "ESXi hosts: C(blocked) when the GPU is not passthrough-capable; C(pending) when DirectPath I/O is not
    enabled yet or waits for a host reboot (enabled but not active); C(ready) when active."
  - A host is C(ready) when at least one GPU is, C(pending) when the best GPU is pending, else C(blocked)
    (also with no facts, the IOMMU off, or no GPU).
  - Reads the pci.ids file named in O(pci_ids) on the controller for device names, when it exists.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
positional: _input
options:
  _input:
    description:
      - One record per inventory host, in inventory order. Each has C(name) and C(kind) (C(kvm), C(proxmox)
        or C(esxi)); Linux hosts C(iommu) (the C(passthrough_iommu) fact) and C(gpus) (the C(passthrough_gpus)
        fact); ESXi hosts C(esxi) (the C(passthrough) result of M(passthrough.gpu.esxi_passthrough_info))
        and optionally C(all_devices_are_gpus) (true when the devices were chosen by name, so every one
        is a GPU; otherwise the GPUs are the devices the host's graphics manager lists).
      - A record with C(error), or without facts, is a host that could not be read.
      - A host listed twice (in two groups) is reported once, with its first record.
    type: list
    elements: dict
    required: true
  pci_ids:
    description: Path of a pci.ids file on the controller for vendor and device names; ignored when missing.
    type: path
  max_mmio_gb:
    description:
      - The most 64-bit MMIO (in GB) a VM may be given; a GPU that needs more is C(blocked).
      - Left out, there is no limit.
    type: int
"""

EXAMPLES = r"""
- name: Readiness of the inventory
  ansible.builtin.set_fact:
    report: "{{ records | passthrough.gpu.readiness(pci_ids='/usr/share/misc/pci.ids') }}"
  vars:
    records:
      - name: gpu-01
        kind: kvm
        iommu: "{{ hostvars['gpu-01'].ansible_facts.passthrough_iommu }}"
        gpus: "{{ hostvars['gpu-01'].ansible_facts.passthrough_gpus }}"
"""

RETURN = r"""
_value:
  description:
    - C(hosts) (list of host rows) and C(summary) (C(hosts), C(hosts_ready), C(hosts_pending), C(gpus),
      C(gpus_ready), C(gpus_pending)).
    - "A host row: C(name), C(kind), C(kind_label), C(iommu) (text), C(iommu_on) (bool or null),
      C(status), C(ready) (status is not blocked), C(ready_text), C(reason), C(notes), C(gpus)."
    - "A GPU row: C(address), C(name), C(ids), C(class), C(group), C(isolated) (bool or null), C(isolation)
      (text with why not), C(driver), C(bars) (list of text), C(mmio) (text), C(mmio_gb), C(status),
      C(ready), C(ready_text) (C(yes), C(pending), C(no)), C(reason), C(blockers), C(pending), C(notes)."
  type: dict
"""

import os

from ansible.errors import AnsibleFilterError

from ansible_collections.passthrough.gpu.plugins.module_utils import _mmio
from ansible_collections.passthrough.gpu.plugins.module_utils._gpu import human_size

VFIO = "vfio-pci"
KIND_LABELS = {"kvm": "KVM/libvirt", "proxmox": "Proxmox VE", "esxi": "VMware ESXi"}
CLASS_LABELS = {"0300": "VGA controller", "0302": "3D controller", "0380": "Display controller"}
STATUS_RANK = {"ready": 0, "pending": 1, "blocked": 2}
# What the report's Ready column says: pending means ready once the named step is done.
READY_TEXT = {"ready": "yes", "pending": "pending", "blocked": "no"}


def pci_names(path, wanted):
    """``{"vvvv:dddd": "Vendor Device"}`` for the wanted ids from a pci.ids file ({} when missing).

    Only the vendor and device lines are read; the class list at the end of the file is skipped.
    """
    names = {}
    if not path or not wanted or not os.path.isfile(path):
        return names
    vendors = set(w.split(":")[0] for w in wanted)
    vendor, vendor_name = None, None
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if not line or line.startswith("#") or line.startswith("\t\t"):
                continue
            if line.startswith("C "):
                break  # device classes follow the vendors
            if not line.startswith("\t"):
                vendor, _sep, vendor_name = line.partition("  ")
                vendor = vendor.lower() if vendor.lower() in vendors else None
            elif vendor:
                device, _sep, device_name = line[1:].partition("  ")
                key = "%s:%s" % (vendor, device.lower())
                if key in wanted:
                    names[key] = "%s %s" % (vendor_name.strip(), device_name.strip())
    return names


def _describe(device):
    return "%s [%s:%s]" % (device["address"], device.get("vendor_id"), device.get("device_id"))


def _isolation(gpu, iommu):
    """(isolated or None, text, blocker or None)."""
    group_id = gpu.get("iommu_group")
    if not iommu.get("enabled"):
        return None, "n/a (IOMMU off)", None  # the host-level IOMMU blocker says it once
    group = dict((g["id"], g) for g in iommu.get("groups") or []).get(group_id)
    if group is None:
        return None, "no IOMMU group", "no IOMMU group"
    if group.get("isolated"):
        return True, "yes (group %d)" % group_id, None
    devices = iommu.get("devices") or {}
    mine = set([gpu["address"]] + list(gpu.get("companions") or []))
    others = [_describe(devices[a]) for a in group.get("devices") or []
              if a not in mine and a in devices and not devices[a].get("is_bridge")]
    why = ", ".join(others) or "; ".join(group.get("reasons") or []) or "other devices"
    return False, "no: group %d shared with %s" % (group_id, why), \
        "IOMMU group %d is shared with %s" % (group_id, why)


def _bar_text(region):
    flags = [region.get("type", "mem")]
    if region.get("is_64bit"):
        flags.append("64-bit")
    if region.get("prefetchable"):
        flags.append("prefetchable")
    if region.get("assigned") is False:
        flags.append("NOT ASSIGNED")
    return "BAR%d %s %s" % (region["index"], human_size(region["size_bytes"]), ", ".join(flags))


def _mmio_text(mmio):
    if not mmio:
        return "unknown", None
    if not mmio.get("needs_64bit_mmio"):
        total = mmio.get("bar_total_bytes") or 0
        return ("%s of 64-bit BARs: no 64-bit MMIO setting needed" % human_size(total) if total
                else "no 64-bit BARs"), mmio.get("esxi_64bit_mmio_size_gb")
    text = "%d GB (%s rule; ESXi pciPassthru.64bitMMIOSizeGB, OVMF X-PciMmio64Mb=%d)" % (
        mmio["esxi_64bit_mmio_size_gb"], mmio.get("rule"), mmio.get("ovmf_x_pcimmio64mb"))
    return text, mmio["esxi_64bit_mmio_size_gb"]


def linux_gpu(gpu, iommu, names, max_mmio_gb):
    ids = "%s:%s" % (gpu.get("vendor_id"), gpu.get("device_id"))
    functions = [gpu] + list(gpu.get("companion_functions") or [])
    isolated, isolation, isolation_blocker = _isolation(gpu, iommu)
    blockers, pending, notes = [], [], []
    if not iommu.get("enabled"):
        blockers.append("IOMMU off")
    if isolation_blocker:
        blockers.append(isolation_blocker)
    if gpu.get("boot_vga"):
        blockers.append("console GPU (boot_vga): the host needs another display adapter or a headless boot")
    unassigned = [f["address"] for f in functions if any(b.get("assigned") is False for b in f.get("bars") or [])]
    if unassigned:
        blockers.append("BAR not assigned on %s: enable Above 4G decoding in firmware" % ", ".join(unassigned))
    mmio_text, mmio_gb = _mmio_text(gpu.get("mmio"))
    if max_mmio_gb is not None and mmio_gb is not None and mmio_gb > max_mmio_gb:
        blockers.append("needs %d GB of 64-bit MMIO, above the %d GB limit" % (mmio_gb, max_mmio_gb))
    if iommu.get("enabled") and iommu.get("acs_override"):
        notes.append("isolation relies on pcie_acs_override (weaker than real ACS)")
    if (gpu.get("mmio") or {}).get("ovmf_fw_cfg_needed"):
        notes.append("OVMF guests need -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=%d"
                     % gpu["mmio"]["ovmf_x_pcimmio64mb"])
    rom = gpu.get("rom")
    if rom and rom.get("has_uefi") is False:
        notes.append("option ROM has no UEFI image: no picture in an OVMF guest before its driver loads")
    off_vfio = ["%s: %s" % (f["address"], f.get("driver") or "no driver")
                for f in functions if f.get("driver") != VFIO]
    if off_vfio:
        pending.append("bind pending: not on vfio-pci yet (%s)" % "; ".join(off_vfio))
    drivers = [gpu.get("driver") or "none"]
    drivers += ["%s on %s" % (f.get("driver") or "none", f["address"]) for f in functions[1:]]
    row = {
        "address": gpu["address"], "ids": ids, "class": gpu.get("class"),
        "name": names.get(ids) or CLASS_LABELS.get((gpu.get("class") or "")[:4], "display device"),
        "group": gpu.get("iommu_group"), "isolated": isolated, "isolation": isolation,
        "driver": ", ".join(drivers),
        # the companions' BARs are passed through too, so they count; ".1 BAR0 ..." names the function
        "bars": [_bar_text(b) for b in gpu.get("bars") or []] + [
            "%s %s" % (f["address"][-2:], _bar_text(b)) for f in functions[1:] for b in f.get("bars") or []],
        "mmio": mmio_text, "mmio_gb": mmio_gb,
    }
    return _verdict(row, blockers, pending, notes)


def _verdict(row, blockers, pending, notes):
    row.update(blockers=blockers, pending=pending, notes=notes)
    if blockers:
        row["status"], row["reason"] = "blocked", "; ".join(blockers)
    elif pending:
        row["status"], row["reason"] = "pending", "; ".join(pending)
    else:
        row["status"], row["reason"] = "ready", "nothing missing"
    row["ready"] = row["status"] != "blocked"
    row["ready_text"] = READY_TEXT[row["status"]]
    return row


def esxi_gpu(device):
    ids = "%s:%s" % (device.get("vendor_id"), device.get("device_id"))
    blockers, pending, notes = [], [], []
    if not device.get("capable"):
        blockers.append("ESXi reports it not passthrough-capable (console GPU, or VT-d/AMD-Vi off in firmware)")
    elif not device.get("enabled"):
        pending.append("enable pending: DirectPath I/O is off (passthrough.gpu.esxi_passthrough turns it on)")
    elif not device.get("active"):
        pending.append("reboot pending: passthrough is enabled, active after a host reboot")
    if device.get("graphics_type") in ("shared", "sharedDirect") and not device.get("enabled"):
        notes.append("runs in %s graphics mode now (vGPU / shared)" % device["graphics_type"])
    count_gb = _mmio.count_rule_gb(1)
    row = {
        "address": device.get("id"), "ids": ids, "class": None,
        "name": " ".join(x for x in (device.get("vendor_name"), device.get("name")) if x) or "GPU",
        "group": None, "isolated": None, "isolation": "n/a (ESXi decides)",
        "driver": "passthrough %s" % ("active" if device.get("active") else "enabled, not active"
                                      if device.get("enabled") else "off"),
        "bars": [], "mmio": "%d GB by the count rule (vSphere does not report BAR sizes)" % count_gb,
        "mmio_gb": count_gb,
    }
    return _verdict(row, blockers, pending, notes)


def _host(record, names, max_mmio_gb):
    kind = record.get("kind") or "kvm"
    host = {"name": record.get("name"), "kind": kind, "kind_label": KIND_LABELS.get(kind, kind),
            "iommu": "unknown", "iommu_on": None, "gpus": [], "notes": []}
    if kind == "esxi":
        info = record.get("esxi")
        if record.get("error") or not info:
            return _host_verdict(host, "no facts: %s" % (record.get("error") or "host unreachable or not read"))
        host["iommu"] = "n/a (per device: capable)"
        devices = info.get("devices") or []
        if not record.get("all_devices_are_gpus"):
            devices = [d for d in devices if d.get("graphics_type") is not None]
        host["gpus"] = [esxi_gpu(d) for d in devices]
        if info.get("host_reboot_required"):
            host["notes"].append("the host waits for a reboot")
        return _host_verdict(host, None)
    iommu, gpus = record.get("iommu"), record.get("gpus")
    if record.get("error") or iommu is None or gpus is None:
        return _host_verdict(host, "no facts: %s" % (record.get("error") or "host unreachable or not read"))
    host["iommu_on"] = bool(iommu.get("enabled"))
    host["iommu"] = "on (%s)" % (iommu.get("vendor") or "unknown") if host["iommu_on"] else "off"
    if iommu.get("acs_override"):
        host["notes"].append("pcie_acs_override is on the kernel command line")
    host["gpus"] = [linux_gpu(g, iommu, names, max_mmio_gb) for g in gpus]
    if not host["iommu_on"]:
        return _host_verdict(host, "IOMMU is off: enable VT-d/AMD-Vi in firmware and intel_iommu=on or "
                                   "amd_iommu=on on the kernel command line")
    return _host_verdict(host, None)


def _host_verdict(host, blocker):
    gpus = host["gpus"]
    if blocker:
        host["status"], host["reason"] = "blocked", blocker
    elif not gpus:
        host["status"], host["reason"] = "blocked", "no GPU found"
    else:
        best = min(STATUS_RANK[g["status"]] for g in gpus)
        host["status"] = [s for s, r in STATUS_RANK.items() if r == best][0]
        chosen = [g for g in gpus if STATUS_RANK[g["status"]] == best]
        if host["status"] == "ready":
            host["reason"] = "%d of %d GPUs ready: %s" % (
                len(chosen), len(gpus), ", ".join(g["address"] for g in chosen))
        elif host["status"] == "pending":
            host["reason"] = "no GPU ready yet: " + " | ".join(
                "%s: %s" % (g["address"], "; ".join(g["pending"])) for g in chosen)
        else:
            host["reason"] = "no GPU can be passed through: " + " | ".join(
                "%s: %s" % (g["address"], "; ".join(g["blockers"])) for g in gpus)
    host["ready"] = host["status"] != "blocked"
    host["ready_text"] = READY_TEXT[host["status"]]
    return host


def readiness(records, pci_ids=None, max_mmio_gb=None):
    """The report data for a list of host records (see DOCUMENTATION)."""
    if not isinstance(records, list):
        raise AnsibleFilterError("readiness expects a list of host records, got %s" % type(records).__name__)
    if max_mmio_gb is not None:
        try:
            max_mmio_gb = int(max_mmio_gb)
        except (TypeError, ValueError):
            raise AnsibleFilterError("max_mmio_gb must be a whole number of GB, got %r" % (max_mmio_gb,))
    seen, unique = set(), []
    for record in records:
        if not isinstance(record, dict) or not record.get("name"):
            raise AnsibleFilterError("each host record needs a name, got %r" % (record,))
        if record.get("kind", "kvm") not in KIND_LABELS:
            raise AnsibleFilterError("host %s: kind must be one of %s, got %r" % (
                record["name"], ", ".join(sorted(KIND_LABELS)), record.get("kind")))
        if record["name"] not in seen:
            seen.add(record["name"])
            unique.append(record)
    wanted = set("%s:%s" % (g.get("vendor_id"), g.get("device_id"))
                 for r in unique for g in r.get("gpus") or [] if isinstance(g, dict))
    names = pci_names(pci_ids, wanted)
    hosts = [_host(r, names, max_mmio_gb) for r in unique]
    gpus = [g for h in hosts for g in h["gpus"]]
    return {"hosts": hosts, "summary": {
        "hosts": len(hosts), "hosts_ready": sum(h["status"] == "ready" for h in hosts),
        "hosts_pending": sum(h["status"] == "pending" for h in hosts),
        "gpus": len(gpus), "gpus_ready": sum(g["status"] == "ready" for g in gpus),
        "gpus_pending": sum(g["status"] == "pending" for g in gpus)}}


class FilterModule(object):
    def filters(self):
        return {"readiness": readiness}
