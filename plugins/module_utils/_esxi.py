# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""ESXi host passthrough: which devices a name means, what to change, and the results.

No AnsibleModule and no pyVmomi here: the host is an object with _vsphere.HostApi's methods
(read, update_passthru, update_graphics, enter_maintenance, reboot, boot_state, exit_maintenance,
vgpu_profiles), which unit tests replace with a fake. Errors are VsphereError, with a message for
the user; nothing is changed on the host before every check has passed, and an error after a
change carries ``changed=True`` and says what was already done.
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
PUBLIC_FIELDS = ("id", "name", "vendor_name", "vendor_id", "device_id", "capable", "enabled", "active", "hardware_label")
# graphicsInfo types a GPU with a shared-graphics driver runs in; a GPU in "basic" has no such driver
# (no NVIDIA vGPU manager), in "direct" it is passed through: neither follows graphicsConfig.
SHARED_TYPES = ("shared", "sharedDirect")
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
            # ESXi 7.0.2+: the label a VM's Dynamic DirectPath customLabel must match
            "hardware_label": getattr(info, "hardwareLabel", None) or None,
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


def plan_passthru(selected, state, apply_now, host_name, label=None):
    """The passthrough changes as ``[(pci_id, enabled, apply_now, label)]``, one per PCI id, for one
    batched UpdatePassthruConfig. Enabling a device the host says is not capable is refused.

    With apply_now the wanted state is enabled *and* active, so a device enabled earlier without
    apply_now is sent again to take effect now (ESXi may ignore applyNow for a device it cannot
    hot-apply: the run reads the result back). ``label``: the hardware label every device is to
    have ("" none; None: not managed, sent as None)."""
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
        relabel = label is not None and (record["hardware_label"] or "") != label
        if record["enabled"] != want or (apply_now and record["active"] != want) or relabel:
            changes.append((record["id"], want, bool(apply_now), label if relabel else None))
    return changes


def predict(records, changes):
    """The records as they will be after the changes, if applyNow takes effect (copies)."""
    wanted = dict((change[0], change[1:]) for change in changes)
    out = []
    for record in records:
        record = dict(record)
        if record["id"] in wanted:
            enabled, apply_now, label = wanted[record["id"]]
            record["enabled"] = enabled
            if apply_now:
                record["active"] = enabled
            if label is not None:
                record["hardware_label"] = label or None
        out.append(record)
    return out


def pending(records):
    """Whether a device's passthrough waits for a reboot (enabled differs from active)."""
    return any(r["enabled"] != r["active"] for r in records)


def graphics_pending(graphics_info, config):
    """The PCI ids of GPUs whose graphics type waits for a reboot: ``graphics_info`` is the host's
    graphicsInfo (the type each GPU runs in now), ``config`` a graphics_record (the configured
    default and per-device types). ESXi applies a new configuration when Xorg restarts or the host
    reboots. Only GPUs in a shared type count (see SHARED_TYPES)."""
    if config is None:
        return []
    out = []
    for info in graphics_info or []:
        if info.graphicsType in SHARED_TYPES:
            wanted = config["device_types"].get(info.pciId) or config["default_type"]
            if wanted and wanted != info.graphicsType:
                out.append(info.pciId)
    return out


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
    """What the diff shows (and ``changed`` compares): per device its passthrough state and
    hardware label, and the graphics configuration."""
    state = {"devices": dict((r["id"], {"enabled": r["enabled"], "active": r["active"],
                                        "hardware_label": r["hardware_label"]}) for r in records)}
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


def reboot_host(api, host_name, boot_time, in_maintenance, timeout, done, clock=time.monotonic, sleep=time.sleep):
    """Maintenance mode (unless the host is in it already), RebootHost_Task, wait until the host is
    connected with a newer boot time, then leave maintenance mode only if this entered it. Each step
    that changed the host is appended to ``done`` (and taken off again when undone)."""
    deadline = clock() + timeout
    entered = "entered maintenance mode"
    if not in_maintenance:
        api.enter_maintenance(timeout)
        done.append(entered)
    try:
        # False: the connection broke once the task was submitted (a direct ESXi login going down)
        api.reboot()
    except VsphereError as exc:
        if entered in done:  # the host did not go down: leave it as it was found
            try:
                api.exit_maintenance(max(deadline - clock(), 60))
            except VsphereError as exit_exc:
                raise VsphereError("%s; leaving maintenance mode again failed too: %s" % (exc, exit_exc))
            done.remove(entered)
        raise
    done.append("rebooted the host (RebootHost_Task)")

    def back():
        state = api.boot_state()
        return state is not None and state[0] == "connected" and state[1] is not None and (
            boot_time is None or state[1] > boot_time)

    if not wait_until(back, deadline, clock, sleep):
        raise VsphereError("host %s was rebooted but was not connected again with a new boot time within "
                           "reboot_timeout (%d s); it %s in maintenance mode" % (
                               host_name, timeout, "stays" if entered in done or in_maintenance else "may be"))
    if entered in done:
        api.exit_maintenance(max(deadline - clock(), 60))
        done.remove(entered)


def _state(raw, selectors, host_name):
    """(selected records, graphics record, GPUs whose graphics type waits for a reboot) of a read."""
    records = device_records(raw.get("hardware.pciDevice"), raw.get("pciPassthruInfo"))
    graphics = graphics_record(raw.get("graphicsConfig"))
    return match_devices(selectors, records, host_name), graphics, graphics_pending(raw.get("graphicsInfo"), graphics)


def _ids(pci_ids):
    shown = list(pci_ids[:MAX_LISTED]) + (["%d more" % (len(pci_ids) - MAX_LISTED)] if len(pci_ids) > MAX_LISTED else [])
    return ", ".join(shown)


def _update_passthru(api, changes, before, selectors, host_name, done):
    """The one UpdatePassthruConfig. When it fails, the host is read back: real ESXi may have applied
    part of the batch before the failure (the simulator never does)."""
    try:
        api.update_passthru(changes)
    except VsphereError as exc:
        try:
            now = _state(api.read(), selectors, host_name)[0]
        except VsphereError:
            raise VsphereError("%s (the host could not be read back to see whether part of the batch was applied)" % exc)
        moved = [r["id"] for r in now if snapshot([r], None) != snapshot([b for b in before if b["id"] == r["id"]], None)]
        if moved:
            raise VsphereError("%s; the host applied part of the batch anyway: %s" % (exc, _ids(moved)), changed=True)
        raise
    done.append("UpdatePassthruConfig for %d device(s) (%s)" % (len(changes), _ids([c[0] for c in changes])))


def check_params(params):
    """What the argument spec cannot check, before any connection: raises VsphereError."""
    if params.get("reboot_timeout") is not None and params["reboot_timeout"] < 1:
        raise VsphereError("reboot_timeout must be at least 1 second, got %d; nothing was changed" % params["reboot_timeout"])


def run_passthrough(params, api, check_mode, clock=time.monotonic, sleep=time.sleep):
    """The esxi_passthrough module: read, plan, one gate for check mode, act, read back, decide on
    the reboot from what was read back, and report ``changed`` from a before/after comparison."""
    raw = api.read()
    host_name = raw.get("name")
    selectors = params["devices"] or []
    selected, graphics_before, graphics_due = _state(raw, selectors, host_name)
    label = params.get("hardware_label")
    changes = plan_passthru(selected, params["state"], params["apply_now"], host_name, label)
    graphics = plan_graphics(graphics_before, params.get("graphics_type"), params.get("assignment_policy"), host_name)
    graphics_change = graphics != graphics_before
    # a graphics type waiting for a reboot counts when this run manages the graphics configuration
    manages_graphics = params.get("graphics_type") is not None or params.get("assignment_policy") is not None
    warnings = []
    if params.get("graphics_type") == "sharedDirect" and params["state"] == "enabled" and selected:
        warnings.append("graphics_type sharedDirect is for vGPU, which a GPU with passthrough enabled does not "
                        "serve: %s" % _listing(selected))

    rebooted = False
    if check_mode:
        # predicted: applyNow is assumed to take effect (ESXi may refuse it for a device)
        after = predict(selected, changes)
        graphics_due = graphics_pending(raw.get("graphicsInfo"), graphics)
        if params["reboot"] and (pending(after) or (manages_graphics and graphics_due)):
            after = [dict(r, active=r["enabled"]) for r in after]
            graphics_due, rebooted = [], True
    else:
        after = selected
        done = []
        try:
            if changes:
                _update_passthru(api, changes, selected, selectors, host_name, done)
            if graphics_change:
                api.update_graphics(graphics["default_type"], graphics["assignment_policy"], graphics["device_types"])
                done.append("UpdateGraphicsConfig (default type %s, policy %s)" % (
                    graphics["default_type"], graphics["assignment_policy"]))
            if changes or graphics_change:
                raw = api.read()
                after, graphics, graphics_due = _state(raw, selectors, host_name)
            if params["reboot"] and (pending(after) or (manages_graphics and graphics_due)):
                reboot_host(api, host_name, raw.get("runtime.bootTime"), raw.get("runtime.inMaintenanceMode"),
                            params["reboot_timeout"], done, clock, sleep)
                rebooted = True
                after, graphics, graphics_due = _state(api.read(), selectors, host_name)
                stuck = [r for r in after if r["enabled"] != r["active"]]
                if stuck:
                    warnings.append("after the reboot passthrough is still not in effect for %s" % _listing(stuck))
                if manages_graphics and graphics_due:
                    warnings.append("after the reboot the configured graphics type is still not in effect for %s" % (
                        _ids(graphics_due)))
            if label is not None:
                unlabelled = [r["id"] for r in after if (r["hardware_label"] or "") != label]
                if unlabelled:
                    raise VsphereError("host %s did not take hardware_label %r for %s (hardware labels need ESXi and "
                                       "API 7.0.2 or later)" % (host_name, label, _ids(unlabelled)))
        except VsphereError as exc:
            if done:
                raise VsphereError("%s; already done: %s" % (exc, "; ".join(done)), changed=True)
            raise

    before_state, after_state = snapshot(selected, graphics_before), snapshot(after, graphics)
    return {
        "changed": before_state != after_state or rebooted,
        "host": host_name,
        "devices": [public(r) for r in after],
        "graphics": graphics,
        "reboot_required": pending(after) or bool(manages_graphics and graphics_due),
        "rebooted": rebooted,
        "diff": {"before": before_state, "after": after_state},
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
    graphics = graphics_record(raw.get("graphicsConfig"))
    listed = set(r["id"] for r in records)
    graphics_due = [i for i in graphics_pending(raw.get("graphicsInfo"), graphics) if i in listed]
    return {"changed": False, "passthrough": {
        "host": host_name,
        "devices": [dict(public(r), graphics_type=r["graphics_type"]) for r in records],
        "graphics": graphics,
        "vgpu_profiles": api.vgpu_profiles(parent) if parent is not None else [],
        "reboot_required": pending(records) or bool(graphics_due),
        "host_reboot_required": bool(raw.get("summary.rebootRequired")),
        "in_maintenance_mode": bool(raw.get("runtime.inMaintenanceMode")),
    }}
