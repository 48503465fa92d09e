# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""esxi_vm_passthrough's logic: PCI devices (static DirectPath, Dynamic DirectPath, vGPU) on a VM.

Decide, then act: ``run()`` reads the VM, its host's config target (active devices with their
systemId, vGPU profiles) and, for messages, the host's passthrough state; ``plan()`` matches the
wanted devices against the VM's and refuses, all problems in one message, what ESXi would refuse
or what would leave the VM unable to power on; only then, outside check mode, one
``ReconfigVM_Task`` adds and removes the devices and locks the memory reservation.

Devices are plain dicts here: ``kind`` (static, dynamic, vgpu, other), ``id`` (static: PCI id
``0000:3b:00.0``), ``allowed`` (dynamic: [(vendor, device)] as unsigned ints), ``label``
(dynamic), ``vgpu_profile`` (vgpu), ``name``, and ``key`` for a device the VM has.

Every read of the VM and its host happens inside ``_vsphere.call()``, so a vSphere fault (a VM
deleted meanwhile, a missing privilege) is a VsphereError naming the step, never a traceback.
"""

from __future__ import absolute_import, division, print_function

import re
from collections import Counter

try:
    from pyVmomi import vim
except ImportError:  # reported by _vsphere.connect() through vmware.vmware's client
    vim = None

from ansible_collections.passthrough.gpu.plugins.module_utils import _vsphere

__metaclass__ = type

PCI_ID_RE = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}:[0-9a-f]{2}\.[0-7])$")
HEX_ID_RE = re.compile(r"^(?:0x)?([0-9a-f]{1,4})$")
DYNAMIC_MIN_HW = 17  # Dynamic DirectPath: vSphere 7.0, virtual hardware vmx-17
DIRECT = ("static", "dynamic")
KIND_TEXT = {"static": "DirectPath I/O", "dynamic": "Dynamic DirectPath I/O", "vgpu": "NVIDIA vGPU",
             "other": "PCI passthrough"}
POWER_OFF_HINT = ("power it off first (for example vmware.vmware.vm_powerstate with state shutdown-guest or "
                  "powered-off) and on again afterwards")


class VmPassthroughError(Exception):
    """A request esxi_vm_passthrough refuses (nothing was changed)."""


# --- names and ids ----------------------------------------------------------------------------

def normalize_pci_id(text):
    """``3b:00.0`` or ``0000:3B:00.0`` -> ``0000:3b:00.0``; None when it is not a PCI id."""
    match = PCI_ID_RE.match(str(text).strip().lower())
    if not match:
        return None
    return "%s:%s" % (match.group(1) or "0000", match.group(2))


def parse_hex_id(text, what):
    """A vendor or device id as 1-4 hex digits (``10de``, ``0x10DE``) -> int."""
    match = HEX_ID_RE.match(str(text).strip().lower())
    if not match:
        raise VmPassthroughError("%s %r is not a 16-bit hex id such as 10de" % (what, text))
    return int(match.group(1), 16)


def hw_version(version):
    """``vmx-19`` -> 19 (0 when unreadable)."""
    match = re.match(r"^vmx-(\d+)$", str(version or ""))
    return int(match.group(1)) if match else 0


def _pair(pair):
    return "%04x:%04x" % pair


def text(device):
    """One line for diffs and messages."""
    kind = device["kind"]
    if kind == "static":
        return "%s (%s)" % (device["id"], KIND_TEXT[kind])
    if kind == "dynamic":
        label = " label %s" % device["label"] if device.get("label") else ""
        return "%s%s (%s)" % (",".join(_pair(p) for p in device["allowed"]), label, KIND_TEXT[kind])
    if kind == "vgpu":
        return "%s (%s)" % (device["vgpu_profile"], KIND_TEXT[kind])
    return "device %s (%s)" % (device.get("key"), KIND_TEXT[kind])


def public(device):
    """A device as the module returns it (ids as 4 hex digits)."""
    allowed = device.get("allowed") or []
    return {"kind": device["kind"], "id": device.get("id"), "name": device.get("name"),
            "vendor_id": "%04x" % allowed[0][0] if allowed else device.get("vendor_id"),
            "device_id": "%04x" % allowed[0][1] if allowed else device.get("device_id"),
            "allowed": [_pair(p) for p in allowed], "label": device.get("label"),
            "vgpu_profile": device.get("vgpu_profile")}


# --- wanted devices ---------------------------------------------------------------------------

def parse_wants(devices, vgpu_profile):
    """The devices asked for, as device dicts. Raises VmPassthroughError listing every problem."""
    wants, problems, seen = [], [], set()
    for index, entry in enumerate(devices or []):
        where = "devices[%d]" % index
        if entry.get("id"):
            pci_id = normalize_pci_id(entry["id"])
            if pci_id is None:
                problems.append("%s: id %r is not a PCI id such as 0000:3b:00.0" % (where, entry["id"]))
            elif entry.get("label"):
                problems.append("%s: label is for Dynamic DirectPath (vendor_id/device_id), not for id" % where)
            elif pci_id in seen:
                problems.append("%s: %s is listed twice; a device can be passed to a VM once" % (where, pci_id))
            else:
                seen.add(pci_id)
                wants.append({"kind": "static", "id": pci_id})
            continue
        if not (entry.get("vendor_id") and entry.get("device_id")):
            problems.append("%s: give either id (static DirectPath) or vendor_id and device_id (Dynamic "
                            "DirectPath)" % where)
            continue
        try:
            pair = (parse_hex_id(entry["vendor_id"], "vendor_id"), parse_hex_id(entry["device_id"], "device_id"))
        except VmPassthroughError as exc:
            problems.append("%s: %s" % (where, exc))
            continue
        wants.append({"kind": "dynamic", "allowed": [pair], "label": entry.get("label") or None})
    if vgpu_profile:
        wants.append({"kind": "vgpu", "vgpu_profile": vgpu_profile})
    if problems:
        raise VmPassthroughError("; ".join(problems))
    return wants


def describe(device):
    """A VirtualPCIPassthrough (pyVmomi, or anything shaped like it) as a device dict.

    The backing's type is told by its fields: only Vmiop has ``vgpu``, only Dynamic has
    ``allowedDevice``, only the static DeviceBackingInfo has ``systemId``.
    """
    backing = device.backing
    found = {"key": device.key, "kind": "other"}
    if hasattr(backing, "vgpu"):
        found.update(kind="vgpu", vgpu_profile=backing.vgpu)
    elif hasattr(backing, "allowedDevice"):
        # Masked: the API's ids are signed shorts or unsigned ints depending on where they came from.
        found.update(kind="dynamic", label=backing.customLabel or None,
                     allowed=[(a.vendorId & 0xFFFF, a.deviceId & 0xFFFF) for a in backing.allowedDevice or []])
    elif hasattr(backing, "systemId"):
        found.update(kind="static", id=normalize_pci_id(backing.id) or str(backing.id).lower(),
                     name=backing.deviceName or None, vendor_id=_vsphere.hex16(backing.vendorId or 0),
                     device_id=str(backing.deviceId or "").lower().replace("0x", "").zfill(4))
    return found


def _signature(device):
    return frozenset(device["allowed"]), device.get("label") or None


# --- the plan ---------------------------------------------------------------------------------

def _static_problem(pci_id, facts):
    """Why a static device cannot be added, and how to fix it (the host module is esxi_passthrough)."""
    host = facts["host"]
    state = facts["passthru"].get(pci_id)
    enable = ("enable it with passthrough.gpu.esxi_passthrough (esxi_hostname: %s, devices: ['%s'], "
              "apply_now: true, or reboot the host)" % (host, pci_id))
    if not facts["passthru"]:
        return "PCI device %s is not passthrough-active on host %s (the VM's host): %s" % (pci_id, host, enable)
    if state is None:
        capable = sorted(i for i, s in facts["passthru"].items() if s["capable"])
        return "host %s has no PCI device %s (its passthrough-capable devices: %s)" % (
            host, pci_id, ", ".join(capable) or "none")
    if not state["capable"]:
        return "PCI device %s on host %s is not passthrough-capable" % (pci_id, host)
    if state["active"]:
        return ("passthrough of %s is active on host %s, but the host does not offer it to VMs "
                "(QueryConfigTarget); see the host's PCI Devices page" % (pci_id, host))
    if state["enabled"]:
        return ("passthrough of %s is enabled on host %s but not active yet: reboot the host, or apply it "
                "at once with passthrough.gpu.esxi_passthrough (apply_now: true)" % (pci_id, host))
    return "passthrough of %s is not enabled on host %s: %s" % (pci_id, host, enable)


def _static_backing(pci_id, info):
    # deviceId is a hex string (vcsim and ESXi compare it as hex), vendorId the host's signed short.
    return {"id": pci_id, "deviceId": "%x" % (info["device_id"] & 0xFFFF), "systemId": info["system_id"],
            "vendorId": _vsphere.signed16(info["vendor_id"] & 0xFFFF), "deviceName": info["name"] or ""}


def _offered(want, offered):
    """The cluster's (vendorId, deviceId) of a device that fits a Dynamic want, None when none does.

    ``offered`` is {(vendor, device, hardware label or None): (vendorId, deviceId)}. Without a label
    any device with the ids fits; with one, on ESXi 7.0.2 and later, only a device whose hardware
    label on the host is the same.
    """
    pair, label = want["allowed"][0], want.get("label")
    for (vendor, device, has_label), ids in offered.items():
        if (vendor, device) == pair and (not label or has_label == label):
            return ids
    return None


def _label_problem(want, facts):
    """Why a labelled Dynamic want fits no device, naming the labels that are offered for its ids."""
    pair = want["allowed"][0]
    labels = [label for (vendor, device, label) in facts["dynamic_offered"] if (vendor, device) == pair]
    named = sorted(set(label for label in labels if label))
    if named:
        offered = "the labels offered for %s: %s" % (_pair(pair), ", ".join(named))
    elif labels:
        offered = "its %s devices have no hardware label" % _pair(pair)
    else:
        offered = "none of its hosts has passthrough active for %s" % _pair(pair)
    return ("no host of VM %s's cluster offers a %s device with hardware label %s (%s): a Dynamic DirectPath "
            "label must match the device's hardware label on the host (ESXi 7.0.2 and later), which "
            "passthrough.gpu.esxi_passthrough sets with its hardware_label option; or leave label out to take "
            "any %s" % (facts["name"], _pair(pair), want["label"], offered, _pair(pair)))


def _dynamic_backing(want, ids):
    # "You must use the vendor ID retrieved from the vSphere host or cluster": the cluster's own
    # values when it lists the device, else the signed shorts HostPciDevice carries.
    pair = want["allowed"][0]
    vendor, device = ids or (_vsphere.signed16(pair[0]), _vsphere.signed16(pair[1]))
    return {"allowedDevice": [(vendor, device)], "customLabel": want["label"] or ""}


def _plan_present(wants, existing, facts, problems, warnings):
    adds = []
    kinds = set(w["kind"] for w in wants)
    mixed_wants = "vgpu" in kinds and bool(kinds & set(DIRECT))
    if mixed_wants:
        problems.append("devices and vgpu_profile together: a VM cannot have both a DirectPath I/O device "
                        "(static or Dynamic) and an NVIDIA vGPU; pick one")
    have_vgpu = [e["vgpu_profile"] for e in existing if e["kind"] == "vgpu"]
    for want in wants:
        if want["kind"] == "static":
            if any(e["kind"] == "static" and e["id"] == want["id"] for e in existing):
                continue
            info = facts["active"].get(want["id"])
            if info:
                adds.append(dict(want, name=info["name"], vendor_id=_vsphere.hex16(info["vendor_id"]),
                                 device_id=_vsphere.hex16(info["device_id"]),
                                 backing=_static_backing(want["id"], info)))
            else:
                problems.append(_static_problem(want["id"], facts))
        elif want["kind"] == "vgpu":
            profile = want["vgpu_profile"]
            if profile in have_vgpu:
                continue
            if have_vgpu:
                problems.append("VM %s has vGPU profile %s; a vGPU profile is not changed in place: remove it "
                                "first (state: absent, vgpu_profile: %s)"
                                % (facts["name"], ", ".join(have_vgpu), have_vgpu[0]))
            if profile not in facts["profiles"]:
                offered = ", ".join(sorted(facts["profiles"]))
                problems.append("host %s does not offer vGPU profile %s (%s)" % (
                    facts["host"], profile, "offered: " + offered if offered else
                    "it offers none: set its GPUs' graphics type to sharedDirect with passthrough.gpu."
                    "esxi_passthrough (graphics_type: sharedDirect) and install the NVIDIA vGPU manager"))
            if not have_vgpu and profile in facts["profiles"]:
                adds.append(dict(want, backing={"vgpu": profile}))
    # Dynamic devices are interchangeable: the VM needs as many of each (ids, label) as asked.
    have = Counter(_signature(e) for e in existing if e["kind"] == "dynamic")
    wanted = [w for w in wants if w["kind"] == "dynamic"]
    for signature, count in Counter(_signature(w) for w in wanted).items():
        want = next(w for w in wanted if _signature(w) == signature)
        missing = max(0, count - have[signature])
        if not missing:
            continue
        ids = _offered(want, facts["dynamic_offered"])
        if ids is None and want["label"]:
            problems.append(_label_problem(want, facts))
            continue
        if ids is None:
            warnings.append("no host of VM %s's cluster has passthrough active for %s: the VM will not power "
                            "on until one has (passthrough.gpu.esxi_passthrough)" % (facts["name"], text(want)))
        adds.extend(dict(want, backing=_dynamic_backing(want, ids)) for dummy in range(missing))
    if any(a["kind"] == "dynamic" for a in adds) and hw_version(facts["hw_version"]) < DYNAMIC_MIN_HW:
        problems.append("VM %s has virtual hardware %s; Dynamic DirectPath I/O needs vmx-%d or later: upgrade "
                        "its compatibility (Actions, Compatibility, Upgrade VM Compatibility) while it is "
                        "powered off" % (facts["name"], facts["hw_version"], DYNAMIC_MIN_HW))
    if not mixed_wants:
        # By what is asked, not by what would be added: a refused add clashes just the same.
        clash = [e for e in existing if (e["kind"] == "vgpu" and kinds & set(DIRECT))
                 or (e["kind"] in DIRECT and "vgpu" in kinds)]
        if clash:
            problems.append("VM %s already has %s: a VM cannot have both a DirectPath I/O device (static or "
                            "Dynamic) and an NVIDIA vGPU; remove it first (state: absent)" % (
                                facts["name"], ", ".join(text(e) for e in clash)))
    return adds


def _plan_absent(wants, existing):
    remove = []
    for device in existing:
        for want in wants:
            same = device["kind"] == want["kind"] and (
                (want["kind"] == "static" and device["id"] == want["id"])
                or (want["kind"] == "dynamic" and _signature(device) == _signature(want))
                or (want["kind"] == "vgpu" and device["vgpu_profile"] == want["vgpu_profile"]))
            if same:
                remove.append(device)
                break
    return remove


def _memory_problems(adds, facts):
    """A VM bound to its host (a static device or a vGPU) whose memory is more than the host has:
    with the full reservation a passthrough VM needs, it could never power on there."""
    memory, host_memory = facts.get("memory_mb"), facts.get("host_memory_mb")
    if not (memory and host_memory and memory > host_memory):
        return []
    bound = [a for a in adds if a["kind"] in ("static", "vgpu")]
    if not bound:
        return []
    return ["VM %s has %d MiB of memory, more than host %s has (%d MiB): a VM with %s reserves all its memory, "
            "so it could never power on there; give the VM less memory first" % (
                facts["name"], memory, facts["host"], host_memory, ", ".join(text(a) for a in bound))]


def _held_warnings(adds, facts):
    """ESXi lets several VMs have one static device (one at a time runs with it): say which others do."""
    warnings = []
    for add in adds:
        holders = (facts.get("held") or {}).get(add.get("id")) if add["kind"] == "static" else None
        if holders:
            running = [name for name, power in holders if power == "poweredOn"]
            warnings.append("%s is also given to %s on host %s; only one VM at a time can run with it%s" % (
                add["id"], ", ".join("VM %s (%s)" % (name, power) for name, power in holders), facts["host"],
                ": VM %s will not power on while %s runs" % (facts["name"], " and ".join(running)) if running else ""))
    return warnings


def lost_features(vm_name, adds):
    """What users must know about a VM that now has a passthrough device."""
    warnings = []
    if any(a["kind"] in DIRECT for a in adds):
        warnings.append("VM %s has a DirectPath I/O device: vMotion, DRS load balancing (Dynamic DirectPath "
                        "still lets DRS pick a host at power-on), snapshots, suspend/resume and memory "
                        "overcommit are unavailable for it, and all its memory stays reserved" % vm_name)
    if any(a["kind"] == "vgpu" for a in adds):
        warnings.append("VM %s has an NVIDIA vGPU: all its memory stays reserved, and vMotion of it needs "
                        "vCenter's vgpu.hotmigrate.enabled setting and a vGPU manager that supports it" % vm_name)
    return warnings


def plan(wants, existing, state, facts):
    """What to add and remove, whether to lock the reservation, and warnings; refuses in one message.

    ``facts``: name, power_state, hw_version, locked, host, active ({pci id: {system_id, vendor_id,
    device_id, name}} from the host's config target), passthru ({pci id: {capable, enabled, active}},
    for messages), profiles (vGPU profiles the host offers), dynamic_offered ({(vendor, device,
    hardware label or None): (vendorId, deviceId) as the cluster's config target gives them}); optional:
    memory_mb and host_memory_mb (a host-bound VM larger than its host is refused), held ({pci id:
    [(VM name, power state)]} of the host's other VMs with that static device, for a warning).

    Devices change only on a powered-off VM. The lock alone also changes on a running VM, as ESXi
    allows: a running VM that has its devices (so all its memory is reserved already) but not the
    lock gets it in place, instead of being refused on every run.
    """
    problems, warnings = [], []
    if state == "present":
        adds, remove = _plan_present(wants, existing, facts, problems, warnings), []
        # A VM with a passthrough device powers on only with all its memory reserved.
        lock = not facts["locked"]
    else:
        adds, remove, lock = [], _plan_absent(wants, existing), False
    state_text = {"poweredOn": "powered on"}.get(facts["power_state"], facts["power_state"])
    if (adds or remove) and facts["power_state"] != "poweredOff":
        problems.append("VM %s is %s: PCI passthrough and vGPU devices are only added or removed while it is "
                        "powered off; %s" % (facts["name"], state_text, POWER_OFF_HINT))
    elif lock and facts["power_state"] not in ("poweredOff", "poweredOn"):
        problems.append("VM %s is %s: its memory reservation is locked while it is powered on or off; resume it "
                        "or power it off first" % (facts["name"], state_text))
    problems.extend(_memory_problems(adds, facts))
    if problems:
        raise VmPassthroughError("refusing, nothing was changed: " + "; ".join(problems))
    warnings.extend(_held_warnings(adds, facts))
    warnings.extend(lost_features(facts["name"], adds))
    return {"add": adds, "remove": remove, "lock": lock, "warnings": warnings}


def outcome(existing, planned, locked):
    """The result fields and diff for the VM after the plan (predicted in check mode)."""
    removed_keys = set(d["key"] for d in planned["remove"])
    after = [d for d in existing if d["key"] not in removed_keys] + planned["add"]
    locked_after = locked or planned["lock"]
    return {
        "changed": bool(planned["add"] or planned["remove"] or planned["lock"]),
        "devices": [public(d) for d in after],
        "added": [public(d) for d in planned["add"]],
        "removed": [public(d) for d in planned["remove"]],
        "memory_reservation_locked_to_max": locked_after,
        "diff": {"before": {"pci_devices": [text(d) for d in existing], "memory_reservation_locked_to_max": locked},
                 "after": {"pci_devices": [text(d) for d in after], "memory_reservation_locked_to_max": locked_after}},
    }


# --- vSphere ----------------------------------------------------------------------------------

def _passthrough_devices(vm):
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualPCIPassthrough)]


def gather(vm, wants, state, what, content=None):
    """The VM's passthrough devices (as device dicts) and the facts plan() needs, read only as far
    as the request needs them. A fault on any read is a VsphereError: "``what`` failed: ...".
    ``content`` (the service content) lets the other VMs of the host be read in one request."""
    return _vsphere.call(what, _gather, vm, wants, state, content)


def _other_holders(vm, host, static_ids, content):
    """{pci id: [(VM name, power state)]}: the other VMs of the host with one of ``static_ids`` as a
    static DirectPath device. One request for all of them (pyVmomi would make one per attribute)."""
    others = [other for other in (getattr(host, "vm", None) or [])
              if getattr(other, "_moId", other) != getattr(vm, "_moId", vm)]
    if not others or content is None:
        return {}
    held = {}
    read = _vsphere.read_many(content, others, ["name", "runtime.powerState", "config.hardware.device"],
                              "reading the other VMs of host %s" % host.name)
    for props in read.values():
        for device in props.get("config.hardware.device") or []:
            if isinstance(device, vim.vm.device.VirtualPCIPassthrough):
                found = describe(device)
                if found["kind"] == "static" and found["id"] in static_ids:
                    held.setdefault(found["id"], []).append((props.get("name"), props.get("runtime.powerState")))
    return held


def _gather(vm, wants, state, content=None):
    existing = [describe(d) for d in _passthrough_devices(vm)]
    host = vm.runtime.host
    config = vm.config
    facts = {"name": vm.name, "power_state": vm.runtime.powerState, "hw_version": config.version,
             "locked": bool(config.memoryReservationLockedToMax), "host": host.name if host else None,
             "active": {}, "passthru": {}, "profiles": [], "dynamic_offered": {}, "held": {},
             "memory_mb": getattr(config.hardware, "memoryMB", None), "host_memory_mb": None}
    if state != "present" or host is None:
        return existing, facts
    static_ids = set(w["id"] for w in wants if w["kind"] == "static") - set(
        e["id"] for e in existing if e["kind"] == "static")
    if static_ids or any(w["kind"] == "vgpu" for w in wants):
        # A static device or a vGPU ties the VM to this host, which must hold all its memory reserved.
        summary_hw = getattr(getattr(host, "summary", None), "hardware", None)
        if getattr(summary_hw, "memorySize", None):
            facts["host_memory_mb"] = summary_hw.memorySize // (1024 * 1024)
    if static_ids:
        facts["held"] = _other_holders(vm, host, static_ids, content)
    browser = vm.environmentBrowser or host.parent.environmentBrowser
    what = "reading the config target of host %s" % host.name
    target = _vsphere.call(what, browser.QueryConfigTarget, host=host)
    for entry in target.pciPassthrough or []:
        if getattr(entry, "virtualFunction", False):
            continue  # SR-IOV virtual functions are not DirectPath devices
        pci = entry.pciDevice
        facts["active"][normalize_pci_id(pci.id) or pci.id] = {
            "system_id": entry.systemId, "vendor_id": pci.vendorId, "device_id": pci.deviceId, "name": pci.deviceName}
    facts["profiles"] = [t.vgpu for t in target.sharedGpuPassthroughTypes or []]
    if any(w["kind"] == "dynamic" for w in wants):
        # Without a host: every host of the VM's cluster, where DRS may place a Dynamic DirectPath VM.
        # customLabel: the device's hardware label on its host (ESXi 7.0.2 and later).
        everywhere = _vsphere.call("reading the config target of VM %s's cluster" % vm.name, browser.QueryConfigTarget)
        for d in everywhere.dynamicPassthrough or []:
            key = (d.vendorId & 0xFFFF, d.deviceId & 0xFFFF, getattr(d, "customLabel", None) or None)
            facts["dynamic_offered"].setdefault(key, (d.vendorId, d.deviceId))
    if any(w["kind"] == "static" and w["id"] not in facts["active"] for w in wants):
        infos = _vsphere.call("reading the PCI passthrough state of host %s" % host.name,
                              lambda: host.configManager.pciPassthruSystem.pciPassthruInfo)
        facts["passthru"] = dict((normalize_pci_id(i.id) or i.id, {"capable": bool(i.passthruCapable),
                                                                   "enabled": bool(i.passthruEnabled),
                                                                   "active": bool(i.passthruActive)})
                                 for i in infos or [])
    return existing, facts


def _device_spec(operation, device):
    return vim.vm.device.VirtualDeviceSpec(operation=operation, device=device)


def _new_device(key, backing):
    pt = vim.vm.device.VirtualPCIPassthrough
    if "vgpu" in backing:
        made = pt.VmiopBackingInfo(vgpu=backing["vgpu"])
    elif "allowedDevice" in backing:
        made = pt.DynamicBackingInfo(
            allowedDevice=[pt.AllowedDevice(vendorId=v, deviceId=d) for v, d in backing["allowedDevice"]],
            customLabel=backing["customLabel"] or None, deviceName="", useAutoDetect=False)
    else:
        made = pt.DeviceBackingInfo(**backing)
    return pt(key=key, backing=made)


def apply(vm, planned):
    """One ReconfigVM_Task with every device change and the reservation lock."""
    by_key = dict((d.key, d) for d in _passthrough_devices(vm))
    changes = [_device_spec("remove", by_key[d["key"]]) for d in planned["remove"]]
    # Negative keys mark new devices; ESXi assigns the real ones.
    changes += [_device_spec("add", _new_device(-100 - i, a["backing"])) for i, a in enumerate(planned["add"])]
    spec = vim.vm.ConfigSpec(deviceChange=changes)
    if planned["lock"]:
        spec.memoryReservationLockedToMax = True
    _vsphere.wait(vm.ReconfigVM_Task(spec), "reconfiguring VM %s" % vm.name)


def run(params, check_mode):
    """The whole module: returns the result dict (with ``warnings`` and ``diff``); raises
    VmPassthroughError or _vsphere.VsphereError."""
    wants = parse_wants(params["devices"], params["vgpu_profile"])
    if not wants:
        raise VmPassthroughError("nothing asked: devices is empty and vgpu_profile is not given; give devices "
                                 "(id, or vendor_id and device_id) or vgpu_profile")
    content = _vsphere.connect(params)
    vm = _vsphere.find_vm(content, params["vm_name"], params["vm_uuid"])
    existing, facts = gather(vm, wants, params["state"], "reading VM %s" % (params["vm_name"] or params["vm_uuid"]),
                             content)
    planned = plan(wants, existing, params["state"], facts)
    result = outcome(existing, planned, facts["locked"])
    result.update(vm=facts["name"], host=facts["host"], warnings=planned["warnings"])
    if result["changed"] and not check_mode:
        _vsphere.call("reconfiguring VM %s" % facts["name"], apply, vm, planned)
        result["devices"], result["memory_reservation_locked_to_max"] = _vsphere.call(
            "reading VM %s back" % facts["name"], lambda: ([public(describe(d)) for d in _passthrough_devices(vm)],
                                                           bool(vm.config.memoryReservationLockedToMax)))
    return result
