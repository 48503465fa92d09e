# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""vm_mmio's logic: size the 64-bit MMIO window of a vSphere VM and set what large BARs need.

Decide, then act: ``run()`` reads the VM, sizes the window (``_mmio``'s rules), compares four
settings (firmware, memory reservation lock, the two ``pciPassthru`` extraConfig keys) and only
then, outside check mode, shuts the guest down (when asked), reconfigures and powers it on again.
Everything above ``run()`` is pure and raises VmMmioError. Every vSphere read and call below goes
through ``_vsphere.call()``/``wait()``, so a fault is an error naming the step, never a traceback.
"""

from __future__ import absolute_import, division, print_function

import re
import time

try:
    from pyVmomi import vim
except ImportError:  # reported by _vsphere.connect() through vmware.vmware's client
    vim = None

from ansible_collections.passthrough.gpu.plugins.module_utils import _mmio, _vsphere

__metaclass__ = type

USE_64BIT = "pciPassthru.use64bitMMIO"
SIZE_GB = "pciPassthru.64bitMMIOSizeGB"
FIRMWARE = "firmware"
LOCKED = "memory_reservation_locked_to_max"
SETTINGS = (FIRMWARE, LOCKED, USE_64BIT, SIZE_GB)
RULES = ("count", "bars", "fixed")
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# BARs are powers of two, so a unit is always binary: 16G, 16GB and 16GiB are 16 * 2**30.
SIZE_RE = re.compile(r"^(\d+)\s*(?:([kmgt])(?:i?b)?|b)?$", re.IGNORECASE)
POLL_SECONDS = 1.0


class VmMmioError(Exception):
    """A request vm_mmio refuses, or a vSphere step that failed. ``changed``: whether the VM was
    already touched (a shutdown sent, a reconfigure done) when it failed."""

    def __init__(self, msg, changed=False):
        super(VmMmioError, self).__init__(msg)
        self.changed = changed


# --- sizing -----------------------------------------------------------------------------------

def parse_size(value):
    """A BAR size in bytes: an int, digits, 0x-hex, or digits with a binary unit (64G, 16GiB, 32M)."""
    if isinstance(value, bool) or value is None:
        raise VmMmioError("bar_sizes: %r is not a size" % (value,))
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        text = value.strip()
        match = SIZE_RE.match(text)
        if text.lower().startswith("0x"):
            try:
                size = int(text, 16)
            except ValueError:
                raise VmMmioError("bar_sizes: %r is not a hexadecimal byte count" % value)
        elif match:
            size = int(match.group(1)) * UNITS[(match.group(2) or "").lower()]
        else:
            raise VmMmioError("bar_sizes: %r is not a size (bytes, or a number with K, M, G or T: 64G, 16GiB, 32M)"
                              % value)
    else:
        raise VmMmioError("bar_sizes: %r is not a size" % (value,))
    if size <= 0 or size & (size - 1):
        # A BAR is always a power of two; anything else is a typo or a sum of BARs.
        raise VmMmioError("bar_sizes: %r is not a power of two; list each 64-bit BAR on its own (a BAR's "
                          "size is always a power of two)" % (value,))
    return size


def _gib(size):
    return "%g GiB" % round(float(size) / _mmio.GIB, 3)


def infer_rule(rule, bar_sizes, size_gb):
    """The rule asked for, or the one the given input implies: bars, then fixed, then count."""
    if rule:
        return rule
    if bar_sizes:
        return "bars"
    if size_gb is not None:
        return "fixed"
    return "count"


def size_plan(rule=None, gpu_count=None, bar_sizes=None, size_gb=None):
    """Both rules' sizes where their input is given, the rule used and the size it gives.

    Returns (plan dict, warnings). Missing or contradicting input raises VmMmioError.
    """
    rule = infer_rule(rule, bar_sizes, size_gb)
    if rule not in RULES:
        raise VmMmioError("rule must be one of %s, got %r" % (", ".join(RULES), rule))
    problems = []
    if rule == "count" and gpu_count is None:
        problems.append("rule count needs gpu_count (the number of GPUs passed to the VM)")
    if rule == "bars" and not bar_sizes:
        problems.append("rule bars needs bar_sizes (the 64-bit BARs of every function passed to the VM)")
    if rule == "fixed" and size_gb is None:
        problems.append("rule fixed needs size_gb")
    if rule != "fixed" and size_gb is not None:
        problems.append("size_gb is only used by rule fixed (the rule here is %s)" % rule)
    if size_gb is not None and size_gb < 1:
        problems.append("size_gb must be at least 1, got %r" % size_gb)
    if problems:
        raise VmMmioError("; ".join(problems))
    sizes = [parse_size(v) for v in bar_sizes or []]
    try:
        by_count = _mmio.count_rule_gb(gpu_count) if gpu_count is not None else None
        by_bars = _mmio.bar_rule_gb(sizes) if sizes else None
    except _mmio.MmioError as exc:
        raise VmMmioError(str(exc))
    chosen = {"count": by_count, "bars": by_bars, "fixed": size_gb}[rule]
    total = sum(sizes) if sizes else None
    if total is not None and chosen * _mmio.GIB < total:
        # Not a judgement call: the BARs cannot all be placed, and ESXi refuses the power-on
        # ("PCIPassthru: total number of pages needed ... exceeds limit").
        raise VmMmioError("refusing, nothing was changed: 64bitMMIOSizeGB %d (rule %s) cannot hold the given BARs "
                          "(%s in all), so the VM would not power on; use rule bars (%d GB) or a size_gb of at "
                          "least %d" % (chosen, rule, _gib(total), by_bars, -(-total // _mmio.GIB)))
    warnings = []
    if by_bars is not None and chosen < by_bars:
        warnings.append("64bitMMIOSizeGB %d (rule %s) is below the %d GB the given BARs need (rule bars): "
                        "the guest may not be able to map them" % (chosen, rule, by_bars))
    if chosen & (chosen - 1):
        warnings.append("64bitMMIOSizeGB %d is not a power of two; firmware places BARs in power-of-two "
                        "aligned windows, so the next power of two is what is really usable" % chosen)
    plan = {
        "rule": rule,
        "size_gb": chosen,
        "count_rule_gb": by_count,
        "bar_rule_gb": by_bars,
        "gpu_count": gpu_count,
        "bar_total_bytes": total,
        "needs_64bit_mmio": None if total is None else total >= _mmio.LARGE_BAR_THRESHOLD,
        "ovmf_x_pcimmio64mb": chosen * 1024,
        "ovmf_fw_cfg": "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=%d" % (chosen * 1024),
    }
    return plan, warnings


# --- settings ---------------------------------------------------------------------------------

def extra_config_values(options):
    """extraConfig as {lowercased key: value}; the last entry of a key wins and an empty value is unset.

    VMX keys are case-insensitive. The last entry wins because vcsim appends a changed key instead
    of replacing it; on ESXi each key appears once, so this changes nothing there.
    """
    values = {}
    for option in options or []:
        values[option.key.lower()] = option.value if option.value not in ("", None) else None
    return values


def read_settings(config):
    """The four settings vm_mmio manages, from a VirtualMachineConfigInfo (or anything shaped like it)."""
    extra = extra_config_values(config.extraConfig)
    return {
        FIRMWARE: config.firmware,
        LOCKED: bool(config.memoryReservationLockedToMax),
        USE_64BIT: extra.get(USE_64BIT.lower()),
        SIZE_GB: extra.get(SIZE_GB.lower()),
    }


def wanted_settings(current, size_gb, firmware="efi", reserve_memory=True):
    """What the four settings should be; ``firmware: keep`` and ``reserve_memory: false`` keep the VM's."""
    return {
        FIRMWARE: current[FIRMWARE] if firmware == "keep" else firmware,
        LOCKED: True if reserve_memory else current[LOCKED],
        USE_64BIT: "TRUE",
        SIZE_GB: str(size_gb),
    }


def _same(key, before, after):
    if key == USE_64BIT:
        return str(before).upper() == after.upper()  # the VMX reads TRUE and true alike
    if key == SIZE_GB:
        return str(before).strip() == after
    return before == after


def changes(current, wanted):
    """The settings that differ, in a fixed order, as {setting, before, after}."""
    return [{"setting": key, "before": current[key], "after": wanted[key]}
            for key in SETTINGS if not _same(key, current[key], wanted[key])]


def config_spec_fields(changed):
    """The ConfigSpec fields for the changes: firmware, memoryReservationLockedToMax, extraConfig pairs."""
    fields, extra = {}, []
    for change in changed:
        if change["setting"] == FIRMWARE:
            fields["firmware"] = change["after"]
        elif change["setting"] == LOCKED:
            fields["memoryReservationLockedToMax"] = change["after"]
        else:
            extra.append((change["setting"], change["after"]))
    if extra:
        fields["extraConfig"] = extra
    return fields


def change_warnings(vm_name, changed):
    warnings = []
    for change in changed:
        if change["setting"] == FIRMWARE and change["before"] == "bios":
            warnings.append("VM %s changes from BIOS to EFI firmware: a guest OS installed for BIOS boot (an MBR "
                            "disk without an EFI system partition) will not boot until its disk is converted "
                            "(for example mbrtogpt on Windows) or it is reinstalled" % vm_name)
    return warnings


def power_action(vm_name, power_state, power_cycle, needs_change):
    """None (reconfigure as is) or "cycle" (shut down, reconfigure, power on); refuses the rest."""
    if not needs_change or power_state == "poweredOff":
        return None
    if power_state == "poweredOn" and power_cycle:
        return "cycle"
    if power_state == "poweredOn":
        raise VmMmioError(
            "refusing, nothing was changed: VM %s is powered on, and its firmware, memory reservation and "
            "64-bit MMIO settings only change while it is powered off. Power it off first, or set "
            "power_cycle=true to shut the guest down cleanly, reconfigure and power it on again" % vm_name)
    raise VmMmioError("refusing, nothing was changed: VM %s is %s; power it off first (power_cycle only "
                      "handles a powered-on VM)" % (vm_name, power_state))


# --- vSphere ----------------------------------------------------------------------------------

def _task(what, method, *args):
    """Start a task and wait for it; a fault at either step is a VsphereError naming ``what``."""
    return _vsphere.wait(_vsphere.call(what, method, *args), what)


def _shutdown(vm, name, timeout):
    """ShutdownGuest, then wait (bounded) for poweredOff. Never a hard power-off: that can lose data."""
    _vsphere.call("shutting down the guest of VM %s (power_cycle needs VMware Tools running in it)" % name,
                  vm.ShutdownGuest)
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = _vsphere.call("reading the power state of VM %s" % name, lambda: vm.runtime.powerState)
        except _vsphere.VsphereError as exc:
            raise VmMmioError("the guest of VM %s was asked to shut down, but %s; nothing was reconfigured"
                              % (name, exc), changed=True)
        if state == "poweredOff":
            return
        if time.monotonic() >= deadline:
            raise VmMmioError("the guest of VM %s did not shut down within %d s (shutdown_timeout); nothing was "
                              "reconfigured, and the guest may still be shutting down" % (name, timeout),
                              changed=True)
        time.sleep(POLL_SECONDS)


def _power_on(vm, name, after_what):
    try:
        _task("powering VM %s on again" % name, vm.PowerOnVM_Task)
    except _vsphere.VsphereError as exc:
        raise VmMmioError("%s, but %s" % (after_what, exc), changed=True)


def _reconfigure(vm, name, fields):
    spec = vim.vm.ConfigSpec(**dict(
        (k, v) for k, v in fields.items() if k != "extraConfig"))
    if "extraConfig" in fields:
        spec.extraConfig = [vim.option.OptionValue(key=k, value=v) for k, v in fields["extraConfig"]]
    _task("reconfiguring VM %s" % name, vm.ReconfigVM_Task, spec)


def run(params, check_mode):
    """The whole module: returns the result dict (with ``warnings`` and ``diff``); raises VmMmioError
    or _vsphere.VsphereError."""
    sizing, warnings = size_plan(params["rule"], params["gpu_count"], params["bar_sizes"], params["size_gb"])
    if params["shutdown_timeout"] < 1:
        # Checked before anything: found only after the shutdown, it would leave the guest down.
        raise VmMmioError("shutdown_timeout must be at least 1 second, got %d; nothing was changed" % params["shutdown_timeout"])
    content = _vsphere.connect(params)
    vm = _vsphere.find_vm(content, params["vm_name"], params["vm_uuid"])
    name, current, power_state = _vsphere.call("reading VM %s" % (params["vm_name"] or params["vm_uuid"]), lambda: (
        vm.name, read_settings(vm.config), vm.runtime.powerState))
    wanted = wanted_settings(current, sizing["size_gb"], params["firmware"], params["reserve_memory"])
    if params["firmware"] == "keep" and current[FIRMWARE] != "efi":
        warnings.append("VM %s keeps %s firmware (firmware=keep): 64-bit MMIO for large BARs needs EFI"
                        % (name, current[FIRMWARE]))
    todo = changes(current, wanted)
    action = power_action(name, power_state, params["power_cycle"], bool(todo))
    warnings.extend(change_warnings(name, todo))
    result = dict(sizing, changed=bool(todo), changes=todo, power_cycled=action == "cycle",
                  settings=wanted, warnings=warnings, diff={"before": current, "after": wanted})
    if not todo or check_mode:
        return result
    if action == "cycle":
        _shutdown(vm, name, params["shutdown_timeout"])
    try:
        _reconfigure(vm, name, config_spec_fields(todo))
    except _vsphere.VsphereError as exc:
        if action != "cycle":
            raise VmMmioError(str(exc))
        # The guest was running: give it back before reporting.
        _power_on(vm, name, "%s after the guest was shut down" % exc)
        raise VmMmioError("%s; the guest had been shut down and VM %s is powered on again, unchanged"
                          % (exc, name), changed=True)
    if action == "cycle":
        _power_on(vm, name, "VM %s was reconfigured" % name)
    return result
