# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""ESXi host passthrough: which devices a name means, what to change, and the results.

No AnsibleModule and no pyVmomi here: the host is an object with _vsphere.HostApi's methods
(read, update_passthru, update_graphics, enter_maintenance, reboot, boot_state, exit_maintenance,
vgpu_profiles), which unit tests replace with a fake. Errors are VsphereError, with a message for
the user; nothing is changed on the host before every check has passed.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.passthrough.gpu.plugins.module_utils._vsphere import VsphereError, hex16

# 0000:af:00.0, or af:00.0 (domain 0000)
PCI_ID = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$", re.IGNORECASE)
# 10de:20f1: vendor and device id, 4 hex digits each (no dot, so never a PCI id)
VENDOR_DEVICE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$", re.IGNORECASE)
PUBLIC_FIELDS = ("id", "name", "vendor_name", "vendor_id", "device_id", "capable", "enabled", "active")
POLL_INTERVAL = 10  # seconds between looks at a rebooting host; a reboot takes minutes
MAX_LISTED = 12  # devices named in an error message


def device_records(pci_devices, passthru_infos, graphics_info=None):
    """One dict per ``hardware.pciDevice``, in the host's order, with the passthrough state of its id.

    The API holds vendor and device ids as signed 16-bit shorts (0x10de is 4318, 0x8086 is -32634);
    the records carry them as 4 lowercase hex digits, as lspci and the Linux modules do.
    """
    infos = {}
    for info in passthru_infos or []:
        infos.setdefault(info.id, info)
    graphics = dict((g.pciId, g.graphicsType) for g in graphics_info or [])
    records = []
    for dev in pci_devices or []:
        info = infos.get(dev.id)
        records.append({
            "id": dev.id, "name": dev.deviceName or "", "vendor_name": dev.vendorName or "",
            "vendor_id": hex16(dev.vendorId), "device_id": hex16(dev.deviceId),
            "capable": bool(info is not None and info.passthruCapable),
            "enabled": bool(info is not None and info.passthruEnabled),
            "active": bool(info is not None and info.passthruActive),
            "graphics_type": graphics.get(dev.id),
        })
    return records


def normalize_pci_id(text):
    """``af:00.0`` or ``0000:AF:00.0`` -> ``0000:af:00.0``; None when ``text`` is not a PCI id."""
    match = PCI_ID.match(text)
    if not match:
        return None
    domain, bus, slot, function = match.groups()
    return "%s:%s:%s.%s" % ((domain or "0000").lower(), bus.lower(), slot.lower(), function)


def describe(record):
    return "%s (%s:%s %s)" % (record["id"], record["vendor_id"], record["device_id"], record["name"])


def _listing(records):
    shown = [describe(r) for r in records[:MAX_LISTED]]
    if len(records) > MAX_LISTED:
        shown.append("%d more" % (len(records) - MAX_LISTED))
    return ", ".join(shown) or "none"


def _match_one(text, records):
    """Indexes of the records ``text`` names (see match_devices)."""
    pci_id = normalize_pci_id(text)
    if pci_id:
        return [i for i, r in enumerate(records) if r["id"] == pci_id]
    ids = VENDOR_DEVICE.match(text)
    if ids:
        wanted = (ids.group(1).lower(), ids.group(2).lower())
        return [i for i, r in enumerate(records) if (r["vendor_id"], r["device_id"]) == wanted]
    low = text.lower()
    exact = [i for i, r in enumerate(records) if r["name"].lower() == low]
    if exact:
        return exact
    partial = [i for i, r in enumerate(records) if low in r["name"].lower()]
    if len(set(records[i]["name"] for i in partial)) > 1:
        raise VsphereError("%r is part of the names of different devices: %s; name them by PCI id, by "
                           "vendor:device or by their whole name" % (text, _listing([records[i] for i in partial])))
    return partial


def match_devices(selectors, records, host_name):
    """The records the selectors name, each once, in the host's order.

    A selector is a PCI id (``0000:af:00.0``, or ``af:00.0``), a ``vendor:device`` id (``10de:1eb8``:
    every device with it), a device's whole name (case-insensitive: every device with that name),
    or a part of one name (refused when it is part of several different names). Selectors that
    match nothing are all named in one error.
    """
    chosen = set()
    unknown = []
    for selector in selectors:
        text = (selector or "").strip()
        found = _match_one(text, records) if text else []
        if not found:
            unknown.append(selector)
        chosen.update(found)
    if unknown:
        capable = [r for r in records if r["capable"]]
        raise VsphereError("no PCI device on host %s matches %s (passthrough-capable devices there: %s)" % (
            host_name, ", ".join(repr(u) for u in unknown), _listing(capable)))
    return [records[i] for i in sorted(chosen)]


def plan_passthru(selected, state, apply_now, host_name):
    """The passthrough changes as ``[(pci_id, enabled, apply_now)]``, one per PCI id, for one
    batched UpdatePassthruConfig. Enabling a device the host says is not capable is refused.

    With apply_now the wanted state is enabled *and* active, so a device enabled earlier without
    apply_now is sent again to take effect now."""
    want = state == "enabled"
    if want:
        refused = [r for r in selected if not r["capable"]]
        if refused:
            raise VsphereError(
                "cannot enable passthrough on host %s for %s: the host reports %s not passthrough-capable "
                "(ESXi says so for devices it uses itself, such as the console VGA, or without the "
                "platform support); nothing was changed" % (
                    host_name, _listing(refused), "it" if len(refused) == 1 else "them"))
    changes = []
    for record in selected:
        if any(c[0] == record["id"] for c in changes):
            continue
        if record["enabled"] != want or (apply_now and record["active"] != want):
            changes.append((record["id"], want, bool(apply_now)))
    return changes


def predict(records, changes):
    """The records as they will be after the changes (copies)."""
    wanted = dict((pci_id, (enabled, apply_now)) for pci_id, enabled, apply_now in changes)
    out = []
    for record in records:
        record = dict(record)
        if record["id"] in wanted:
            enabled, apply_now = wanted[record["id"]]
            record["enabled"] = enabled
            if apply_now:
                record["active"] = enabled
        out.append(record)
    return out


def pending(records):
    """Whether a device's passthrough waits for a reboot (enabled differs from active)."""
    return any(r["enabled"] != r["active"] for r in records)


def graphics_record(config):
    """``HostGraphicsConfig`` as a dict; None when the host has no graphics manager."""
    if config is None:
        return None
    return {
        "default_type": config.hostDefaultGraphicsType,
        "assignment_policy": config.sharedPassthruAssignmentPolicy,
        "device_types": dict((t.deviceId, t.graphicsType) for t in config.deviceType or []),
    }


def plan_graphics(current, default_type, policy, host_name):
    """The wanted graphics configuration (``current`` when nothing is asked)."""
    if default_type is None and policy is None:
        return current
    if current is None:
        raise VsphereError("host %s has no graphics manager: graphics_type and assignment_policy cannot be "
                           "set there; nothing was changed" % host_name)
    wanted = dict(current, device_types=dict(current["device_types"]))
    wanted["default_type"] = default_type or current["default_type"] or "shared"
    wanted["assignment_policy"] = policy or current["assignment_policy"] or "performance"
    return wanted


def public(record):
    return dict((k, record[k]) for k in PUBLIC_FIELDS)


def snapshot(records, graphics):
    """What the diff shows: per device its passthrough state, and the graphics configuration."""
    state = {"devices": dict((r["id"], {"enabled": r["enabled"], "active": r["active"]}) for r in records)}
    if graphics is not None:
        state["graphics"] = graphics
    return state


def wait_until(probe, deadline, clock=time.monotonic, sleep=time.sleep, interval=POLL_INTERVAL):
    """Call probe() until it is true (True) or the deadline passes (False)."""
    while True:
        if probe():
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(interval, left))


def reboot_host(api, host_name, boot_time, in_maintenance, timeout, clock=time.monotonic, sleep=time.sleep):
    """Maintenance mode (unless the host is in it already), RebootHost_Task, wait until the host is
    connected with a newer boot time, then leave maintenance mode only if this entered it."""
    deadline = clock() + timeout
    entered = False
    if not in_maintenance:
        api.enter_maintenance(timeout)
        entered = True
    try:
        api.reboot()
    except VsphereError:
        if entered:  # the host did not go down: leave it as it was found
            api.exit_maintenance(max(deadline - clock(), 60))
        raise

    def back():
        state = api.boot_state()
        return state is not None and state[0] == "connected" and state[1] is not None and (
            boot_time is None or state[1] > boot_time)

    if not wait_until(back, deadline, clock, sleep):
        raise VsphereError("host %s was rebooted but was not connected again with a new boot time within "
                           "reboot_timeout (%d s); it %s in maintenance mode" % (
                               host_name, timeout, "stays" if entered or in_maintenance else "may be"))
    if entered:
        api.exit_maintenance(max(deadline - clock(), 60))


def run_passthrough(params, api, check_mode, clock=time.monotonic, sleep=time.sleep):
    """The esxi_passthrough module: read once, plan, one gate for check mode, act, read back once."""
    raw = api.read()
    host_name = raw.get("name")
    records = device_records(raw.get("hardware.pciDevice"), raw.get("pciPassthruInfo"))
    selected = match_devices(params["devices"] or [], records, host_name)
    changes = plan_passthru(selected, params["state"], params["apply_now"], host_name)
    graphics_before = graphics_record(raw.get("graphicsConfig"))
    graphics = plan_graphics(graphics_before, params.get("graphics_type"), params.get("assignment_policy"), host_name)
    graphics_change = graphics != graphics_before
    after = predict(selected, changes)
    # On ESXi a new default graphics type takes effect once Xorg restarts or the host reboots.
    will_reboot = bool(params["reboot"]) and (pending(after) or graphics_change)
    warnings = []
    if params.get("graphics_type") == "sharedDirect" and params["state"] == "enabled" and selected:
        warnings.append("graphics_type sharedDirect is for vGPU, which a GPU with passthrough enabled does not "
                        "serve: %s" % _listing(selected))

    rebooted = False
    if check_mode:
        if will_reboot:
            after = [dict(r, active=r["enabled"]) for r in after]
            rebooted = True
    elif changes or graphics_change or will_reboot:
        if changes:
            api.update_passthru(changes)
        if graphics_change:
            api.update_graphics(graphics["default_type"], graphics["assignment_policy"], graphics["device_types"])
        if will_reboot:
            try:
                reboot_host(api, host_name, raw.get("runtime.bootTime"), raw.get("runtime.inMaintenanceMode"),
                            params["reboot_timeout"], clock, sleep)
            except VsphereError as exc:
                raise VsphereError("%s (%d passthrough change(s)%s were made before the reboot)" % (
                    exc, len(changes), " and the graphics change" if graphics_change else ""))
            rebooted = True
        raw = api.read()
        after = match_devices(params["devices"] or [], device_records(
            raw.get("hardware.pciDevice"), raw.get("pciPassthruInfo")), host_name)
        graphics = graphics_record(raw.get("graphicsConfig"))
        if rebooted and pending(after):
            warnings.append("after the reboot passthrough is still not in effect for %s" % _listing(
                [r for r in after if r["enabled"] != r["active"]]))

    return {
        "changed": bool(changes or graphics_change or rebooted),
        "host": host_name,
        "devices": [public(r) for r in after],
        "graphics": graphics,
        "reboot_required": pending(after) or (graphics_change and not rebooted),
        "rebooted": rebooted,
        "diff": {"before": snapshot(selected, graphics_before), "after": snapshot(after, graphics)},
        "warnings": warnings,
    }


def run_info(params, api):
    """The esxi_passthrough_info module: ``{"passthrough": {...}}``, read-only."""
    raw = api.read()
    host_name = raw.get("name")
    records = device_records(raw.get("hardware.pciDevice"), raw.get("pciPassthruInfo"), raw.get("graphicsInfo"))
    if params.get("devices"):
        records = match_devices(params["devices"], records, host_name)
    parent = raw.get("parent")
    return {"changed": False, "passthrough": {
        "host": host_name,
        "devices": [dict(public(r), graphics_type=r["graphics_type"]) for r in records],
        "graphics": graphics_record(raw.get("graphicsConfig")),
        "vgpu_profiles": api.vgpu_profiles(parent) if parent is not None else [],
        "reboot_required": pending(records),
        "host_reboot_required": bool(raw.get("summary.rebootRequired")),
        "in_maintenance_mode": bool(raw.get("runtime.inMaintenanceMode")),
    }}
