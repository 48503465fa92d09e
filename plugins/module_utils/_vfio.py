# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""vfio_bind's logic: pick the functions, refuse what is unsafe, plan files and rebinds, act.

Decide, then act: ``run()`` reads sysfs, selects and checks every device, computes the
modprobe.d and initramfs files, and only then (outside check mode) rebinds and writes.
Everything that touches the machine goes through the injected ``Host``.
"""

from __future__ import absolute_import, division, print_function

import fnmatch
import os
import re
import time

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _files, _initramfs, _pci
from ansible_collections.passthrough.gpu.plugins.module_utils import _vfio_runtime as _runtime

__metaclass__ = type

VFIO = _runtime.VFIO
MODPROBE_FILE = "/etc/modprobe.d/passthrough-gpu-vfio.conf"
HEADER = "# managed by passthrough.gpu.vfio_bind: changes here are overwritten"
ID_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{4})$")
MODULE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# One comment line per device is the module's own record of what it persisted, so a later run
# (or state=unbound) knows each device's host module even while vfio-pci holds the device.
RECORD_RE = re.compile(r"^# device (?P<address>\S+) (?P<id>[0-9a-f]{4}:[0-9a-f]{4}) "
                       r"class (?P<klass>[0-9a-f]{6}) module (?P<module>\S+)$")
BLACKLIST_RE = re.compile(r"^blacklist\s+(\S+)\s*$")
# Where kmod reads configuration (modprobe.d(5)); a file elsewhere would never be read.
MODPROBE_DIRS = ("etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d")
VGA_CLASS = "0300"
# _files.Pending's name for an initramfs rebuild vfio_bind wrote files for and has not finished.
PENDING_NAME = "vfio_bind-initramfs"


class VfioError(Exception):
    """A request vfio_bind refuses, or an action that failed (after putting things back)."""


class Host(object):
    """The machine as vfio_bind touches it; the module passes AnsibleModule's pieces."""

    def __init__(self, run_command=None, which=None, mover=None, sleep=time.sleep):
        self._run_command = run_command
        self._which = which
        self.mover = mover
        self.sleep = sleep

    def write(self, path, value):
        """One sysfs write; the kernel reports a refused value as an error on write or close."""
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode("ascii"))
        finally:
            os.close(fd)

    def run(self, argv):
        return self._run_command(argv, environ_update={"LC_ALL": "C"})

    def which(self, name):
        return self._which(name)


def device_id(device):
    return "%s:%s" % (device["vendor_id"], device["device_id"])


def resolve(specs, devices):
    """Addresses named by ``specs`` (addresses or vendor:device ids), in the order given."""
    chosen = []
    for spec in specs:
        text = str(spec).strip().lower()
        if ID_RE.match(text):
            matches = [a for a in sorted(devices) if device_id(devices[a]) == text]
            if not matches:
                raise VfioError("no PCI device has the id %s" % spec)
        else:
            try:
                matches = [_pci.normalize_address(text)]
            except _pci.PciError:
                raise VfioError("'%s' is neither a PCI address (0000:01:00.0 or 01:00.0) nor a "
                                "vendor:device id (10de:2204)%s" % (spec, _pci.yaml_number_hint(spec)))
            if matches[0] not in devices:
                raise VfioError("no PCI device %s on this host" % matches[0])
        chosen.extend(a for a in matches if a not in chosen)
    if not chosen:
        raise VfioError("devices is empty: name at least one address or vendor:device id")
    return chosen


def select(iommu, params):
    """The functions to act on, after every refusal; returns ``(addresses, warnings)``.

    All refusals are collected so one run names every problem.
    """
    devices = iommu["devices"]
    groups = dict((g["id"], g) for g in iommu["groups"])
    bound = params["state"] == "bound"
    named = resolve(params["devices"], devices)
    problems, warnings = [], []
    for address in named:
        if devices[address]["is_bridge"]:
            problems.append("%s is a PCI bridge; bridges stay with the host (name the devices "
                            "behind it)" % _pci.describe(devices[address]))
    if bound and not iommu["enabled"]:
        problems.append("the IOMMU is off (no IOMMU groups): enable VT-d/AMD-Vi in firmware and "
                        "intel_iommu=on or amd_iommu=on on the kernel command line first")
    named = [a for a in named if not devices[a]["is_bridge"]]
    chosen = list(named)
    for address in named:
        group_id = devices[address]["iommu_group"]
        if group_id is None or group_id not in groups:
            if bound and iommu["enabled"]:
                problems.append("%s has no IOMMU group" % address)
            continue
        group = groups[group_id]
        endpoints = [a for a in group["devices"] if a in devices and not devices[a]["is_bridge"]]
        if params["include_group"]:
            chosen.extend(a for a in endpoints if a not in chosen)
        elif bound and [a for a in endpoints if a not in named]:
            warnings.append("include_group is false: %s stays with the host, so IOMMU group %d "
                            "cannot be given to a guest until it is on vfio-pci too" % (
                                ", ".join(a for a in endpoints if a not in named), group_id))
        if bound and not group["isolated"]:
            mine = [r for r in group["reasons"] if r.split(" shares ")[0].find(address) >= 0]
            reason = "IOMMU group %d is not isolated: %s" % (group_id, "; ".join(mine or group["reasons"]))
            if params["allow_shared_group"]:
                if reason not in warnings:
                    warnings.append(reason + " (allow_shared_group is true)")
            elif not any(p.startswith(reason) for p in problems):
                problems.append(reason + "; set allow_shared_group=true only if every device "
                                "in it may leave the host together")
    chosen = sorted(set(chosen))
    if bound:
        for address in chosen:
            if devices[address]["boot_vga"]:
                message = ("%s is the console GPU (boot_vga 1): the host loses its display"
                           % _pci.describe(devices[address]))
                if params["force"]:
                    warnings.append(message + " (force is true)")
                else:
                    problems.append(message + "; set force=true to take it anyway")
        if params["persistent"]:
            _check_id_collisions(devices, chosen, params["force"], problems, warnings)
    if problems:
        raise VfioError("refusing, nothing was changed: " + "; ".join(problems))
    return chosen, warnings


def _check_id_collisions(devices, chosen, force, problems, warnings):
    """``options vfio-pci ids=`` takes every device with those ids at boot, not just ours."""
    ids = set(device_id(devices[a]) for a in chosen)
    for address in sorted(devices):
        if address in chosen or device_id(devices[address]) not in ids:
            continue
        message = ("persistent binding by id %s would also give %s to vfio-pci at boot"
                   % (device_id(devices[address]), _pci.describe(devices[address])))
        if force:
            warnings.append(message + " (force is true)")
        else:
            problems.append(message + "; use runtime only, or force=true")


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def alias_modules(root, modalias):
    """Modules whose modules.alias entries match ``modalias``, for the running kernel under root."""
    release = _read(os.path.join(root, "proc/sys/kernel/osrelease"))
    if not modalias or not release:
        return []
    found = []
    try:
        with open(os.path.join(root, "lib/modules", release, "modules.alias")) as handle:
            for line in handle:
                fields = line.split()
                if len(fields) == 3 and fields[0] == "alias" and fields[1].startswith("pci:"):
                    if fnmatch.fnmatchcase(modalias, fields[1]) and fields[2] not in found:
                        found.append(fields[2])
    except (IOError, OSError):
        return []
    return [m for m in found if m.replace("-", "_") != "vfio_pci"]


def native_module(root, device, records):
    """The host module of a device: its driver's module, else our record, else modules.alias."""
    base = os.path.join(root, _pci.PCI_DEVICES, device["address"])
    if device["driver"] and device["driver"] != VFIO:
        linked = _pci.link_name(os.path.join(base, "driver", "module"))
        return linked or device["driver"].replace("-", "_")
    record = records.get(device["address"])
    if record and record["module"] != "-":
        return record["module"]
    candidates = alias_modules(root, _read(os.path.join(base, "modalias")))
    return candidates[0] if candidates else None


def parse_modprobe(text):
    """Our own file: device records and blacklist lines."""
    records, blacklist = {}, []
    for line in (text or "").splitlines():
        match = RECORD_RE.match(line.strip())
        if match:
            records[match.group("address")] = {
                "address": match.group("address"), "id": match.group("id"),
                "class": match.group("klass"), "module": match.group("module")}
            continue
        match = BLACKLIST_RE.match(line.strip())
        if match and match.group(1) not in blacklist:
            blacklist.append(match.group(1))
    return records, blacklist


def render_modprobe(records, blacklist):
    """The modprobe.d file for these device records (None when there is nothing to hold).

    ``disable_vga=1`` when a VGA-class (0300) function is held: the host's VGA arbiter then
    leaves the legacy VGA ranges alone, which UEFI (OVMF) guests do not use.
    """
    if not records:
        return None
    ordered = [records[a] for a in sorted(records)]
    ids = sorted(set(r["id"] for r in ordered))
    modules = sorted(set(r["module"] for r in ordered if r["module"] != "-"))
    options = "options vfio-pci ids=%s" % ",".join(ids)
    if any(r["class"].startswith(VGA_CLASS) for r in ordered):
        options += " disable_vga=1"
    lines = [HEADER]
    lines += ["# device %s %s class %s module %s" % (r["address"], r["id"], r["class"], r["module"])
              for r in ordered]
    lines.append(options)
    lines += ["softdep %s pre: vfio-pci" % m for m in modules]
    lines += ["blacklist %s" % name for name in sorted(set(blacklist))]
    return "\n".join(lines) + "\n"


def _check_modprobe_file(name, text):
    """Refuse a modprobe_file kmod would not read, or an existing file this module did not write."""
    rel = os.path.normpath("/" + name).lstrip("/")
    if os.path.dirname(rel) not in MODPROBE_DIRS or not rel.endswith(".conf"):
        raise VfioError("modprobe_file %s is not a .conf file in a modprobe.d directory (%s), so modprobe "
                        "would not read it" % (name, ", ".join("/" + d for d in MODPROBE_DIRS)))
    if text and text.splitlines()[0] != HEADER:
        raise VfioError("modprobe_file %s exists and was not written by vfio_bind (its first line is not "
                        "'%s'): not overwriting it, choose another file" % (name, HEADER))


def _check_blacklist(names):
    for name in names:
        if not MODULE_RE.match(name):
            raise VfioError("'%s' is not a kernel module name" % name)
        if name.replace("-", "_") in ("vfio_pci", "vfio", "vfio_iommu_type1"):
            raise VfioError("blacklisting %s would stop vfio-pci itself" % name)


def plan_files(params, devices, chosen, modules, changes):
    """Record the modprobe.d and initramfs contents in ``changes``; returns the initramfs tool."""
    root = params["root"]
    path = os.path.join(root, params["modprobe_file"].lstrip("/"))
    records, blacklist = parse_modprobe(_files.read_text(path))
    if params["state"] == "bound":
        for address in chosen:
            device = devices[address]
            records[address] = {"address": address, "id": device_id(device),
                                "class": device["class"] or "000000",
                                "module": modules.get(address) or "-"}
        blacklist = blacklist + [b for b in params["blacklist"] if b not in blacklist]
    else:
        for address in chosen:
            records.pop(address, None)
        blacklist = [b for b in blacklist if b not in params["blacklist"]]
    text = render_modprobe(records, blacklist)
    changes.want(path, text)
    tool = _initramfs.detect(root, params["initramfs"])
    modules_wanted = _initramfs.vfio_modules(_initramfs.kernel_versions(root)) if text else None
    _initramfs.plan(changes, root, tool, modules_wanted)
    return tool


def _drivers_text(addresses, drivers):
    return "".join("%s %s\n" % (a, drivers.get(a) or "(none)") for a in addresses)


def run(params, host, check_mode):
    """vfio_bind's one entry point: the whole result dict, or VfioError."""
    return apply(plan(params, host), host, check_mode)


def plan(params, host):
    """Every check and every file's new content, before anything is touched; VfioError on bad input.

    host_config plans this together with its other parts, so that a refusal here leaves those
    unchanged too.
    """
    try:
        return _plan(params, host)
    except (_pci.PciError, _files.FileError, _initramfs.InitramfsError) as exc:
        raise VfioError(str(exc))


def apply(planned, host, check_mode):
    """Rebind and write what ``plan`` decided; the result dict, or VfioError."""
    try:
        return _apply(planned, host, check_mode)
    except (_pci.PciError, _files.FileError, _initramfs.InitramfsError) as exc:
        raise VfioError(str(exc))


def check_rebuild_tool(planned, host):
    """VfioError now if the initramfs will need rebuilding and its program is missing.

    vfio_bind finds out at the rebuild, after the runtime rebind; host_config asks before any of
    its parts changes the host.
    """
    tool, root = planned["tool"], planned["params"]["root"]
    if tool in (None, "none") or not _argspec.root_is_live(root) or not planned["params"]["rebuild_initramfs"]:
        return
    if not (planned["changes"].changed or _files.Pending(root, PENDING_NAME).due):
        return
    argv = _initramfs.rebuild_argv(tool)
    if not host.which(argv[0]):
        raise VfioError("%s is not installed; nothing was written" % argv[0])


def _plan(params, host):
    root = params["root"]
    if not params["runtime"] and not params["persistent"]:
        raise VfioError("runtime and persistent are both false: nothing to do; set runtime=true (rebind now) "
                        "or persistent=true (vfio-pci from boot)")
    _check_blacklist(params["blacklist"])
    _check_modprobe_file(params["modprobe_file"],
                         _files.read_text(os.path.join(root, params["modprobe_file"].lstrip("/"))))
    iommu = _pci.read_iommu(root)
    devices = iommu["devices"]
    chosen, warnings = select(iommu, params)
    path = os.path.join(root, params["modprobe_file"].lstrip("/"))
    records = parse_modprobe(_files.read_text(path))[0]
    modules = dict((a, native_module(root, devices[a], records)) for a in chosen)
    changes = _files.FileChanges(mover=host.mover)
    tool = plan_files(params, devices, chosen, modules, changes) if params["persistent"] else None
    return {"params": params, "devices": devices, "chosen": chosen, "warnings": warnings, "modules": modules,
            "before": dict((a, devices[a]["driver"]) for a in chosen), "changes": changes, "tool": tool}


def _apply(planned, host, check_mode):
    params, devices, chosen, modules = planned["params"], planned["devices"], planned["chosen"], planned["modules"]
    before, changes, tool, warnings = planned["before"], planned["changes"], planned["tool"], list(planned["warnings"])
    root = params["root"]
    live = _argspec.root_is_live(root)
    bound = params["state"] == "bound"

    # Runtime first: it undoes itself on failure, so files are written only after it worked.
    runtime = _runtime.Runtime(root, host, check_mode)
    after = dict(before)
    not_done = []
    if params["runtime"] and live:
        try:
            if bound:
                after = runtime.bind([(a, before[a]) for a in chosen])
                for group in sorted(set(devices[a]["iommu_group"] for a in chosen)):
                    runtime.wait_for_group(group)
            else:
                after = runtime.unbind([(a, before[a], modules[a]) for a in chosen])
        except _runtime.RuntimeBindError as exc:
            raise VfioError("%s. No file was written." % exc)
    elif params["runtime"]:
        not_done.append("runtime %s: root is %s, not /, so the running kernel was not touched"
                        % ("binding" if bound else "unbinding", root))

    commands = list(runtime.commands)
    rebuild_required = False
    rebuild = None
    # A run killed during the rebuild left the files written and the initramfs old: redo it.
    pending = _files.Pending(root, PENDING_NAME, mover=host.mover)
    resume = live and tool not in (None, "none") and pending.due
    if resume:
        warnings.append("a previous run wrote the initramfs configuration but did not finish %s "
                        "(it was interrupted; see %s): %s" % (
                            " ".join(_initramfs.rebuild_argv(tool)), pending.path,
                            "it is due" if not params["rebuild_initramfs"] or check_mode else "running it now"))
    if (changes.changed or resume) and tool not in (None, "none"):
        argv = _initramfs.rebuild_argv(tool)
        if not params["rebuild_initramfs"]:
            rebuild_required = True
        elif not live:
            rebuild_required = True
            not_done.append("%s: root is %s, not /" % (" ".join(argv), root))
        else:
            rebuild = argv
    if rebuild:
        try:
            commands.append(_rebuild(rebuild, host, changes, pending, check_mode))
        except VfioError as exc:
            kept = " The runtime change stays: %s." % _drivers_text(chosen, after).strip().replace("\n", ", ") \
                if runtime.writes else ""
            raise VfioError(str(exc) + kept)
    elif changes.changed and not check_mode:
        changes.apply()

    held = [a for a in chosen if after[a] == VFIO]
    wrong = [a for a in chosen if (a not in held) == bound]
    result = {
        "changed": (changes.changed or bool(rebuild) or any(after[a] != before[a] for a in chosen)
                    or bool(runtime.writes)),
        "devices": [_device_result(devices[a], before[a], after[a], modules[a]) for a in chosen],
        "commands": commands,
        "sysfs_writes": runtime.writes,
        "files": changes.changed_paths,
        "initramfs": tool,
        "initramfs_rebuild_required": rebuild_required,
        "reboot_required": bool(params["persistent"] and wrong),
        "not_done": not_done,
        "warnings": warnings + ["not done: " + n for n in not_done],
        "diff": changes.diff(root),
    }
    if any(after[a] != before[a] for a in chosen):
        result["diff"].append({"before_header": "PCI drivers", "after_header": "PCI drivers",
                               "before": _drivers_text(chosen, before),
                               "after": _drivers_text(chosen, after)})
    return result


def _rebuild(argv, host, changes, pending, check_mode):
    """Write the files and rebuild the initramfs; on failure put every file back byte for byte.

    ``pending`` marks the rebuild as due from before the first write until it succeeded. After a
    failure it stays only if an earlier, interrupted run had left it: the files put back are
    that run's, which the initramfs still does not hold.
    """
    entry = {"argv": argv, "ran": not check_mode, "rc": None}
    if check_mode:
        return entry
    binary = host.which(argv[0])
    if not binary:
        raise VfioError("%s is not installed; nothing was written" % argv[0])
    was_due = pending.due
    pending.mark([argv], changes.changed_paths)
    try:
        changes.apply()
    except _files.FileError:
        if not was_due:
            pending.clear()
        raise
    rc, out, err = host.run([binary] + argv[1:])
    entry["rc"] = rc
    if rc != 0:
        changes.restore()
        if not was_due:
            pending.clear()
        put_back = ("so %s were put back as they were" % ", ".join(changes.changed_paths)
                    if changes.changed else "no file was changed in this run")
        raise VfioError("%s failed (rc %d), %s: %s" % (" ".join(argv), rc, put_back, _tail(out, err)))
    pending.clear()
    return entry


def _tail(out, err, lines=10):
    """The end of what a failed command printed. initramfs-tools names the failing hook on stdout
    ("E: .../hooks/x failed with return 1."), while the hook's own message goes to stderr."""
    text = [line.rstrip() for part in (out, err) for line in (part or "").splitlines() if line.strip()]
    return "\n".join(text[-lines:])


def _device_result(device, before, after, module):
    return {
        "address": device["address"],
        "id": device_id(device),
        "vendor_id": device["vendor_id"],
        "device_id": device["device_id"],
        "class": device["class"],
        "group": device["iommu_group"],
        "driver_before": before,
        "driver_after": after,
        "host_module": module,
    }
