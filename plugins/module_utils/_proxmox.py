# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Proxmox VE VM configs (``/etc/pve/qemu-server/<vmid>.conf``): parse, plan, render.

The format, as PVE::QemuServer's parse_vm_config reads it: the current config comes first, then
optional sections opened by a ``[name]`` line (``[PENDING]``, ``[special:cloudinit]``, one per
snapshot). ``#`` lines are the description; other lines are ``key: value``. Only the current
config (the part before the first section line) is edited here, one line at a time: every other
line, the sections and the line endings stay byte for byte, so a round trip of an unchanged file
is the identity.

``hostpciN`` values are property strings: ``[host=]<id>[;<id>...]`` (or ``mapping=<name>``)
then ``,key=value`` options (``pcie``, ``x-vga``, ``rombar``, ``romfile``, ``mdev``,
``device-id`` ...). Ids are ``[domain:]bus:dev[.func]``; without ``.func`` the whole slot goes as
one multifunction device.
"""

from __future__ import absolute_import, division, print_function

import os
import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _pci

__metaclass__ = type

MAX_HOSTPCI = 16
CONF_DIR = "etc/pve/qemu-server"
PID_DIR = "run/qemu-server"
SECTION_RE = re.compile(r"^\[[^\]]+\]\s*$")
KEY_RE = re.compile(r"^([a-z][a-z_]*\d*):\s*(.*?)\s*$")
HOSTPCI_RE = re.compile(r"^hostpci(\d+)$")
PCI_ID_RE = re.compile(r"^(?:([0-9a-f]{4}):)?([0-9a-f]{2}):([0-9a-f]{2})(?:\.([0-7]))?$")
MAPPING_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]*$")
MMIO_RE = re.compile(r"((?:name=)?opt/ovmf/X-PciMmio64Mb,string=)(\d+)")
MMIO_ARG = "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=%d"
TRUE, FALSE = ("1", "on", "yes", "true"), ("0", "off", "no", "false")
HUGEPAGES = ("2", "1024", "any")
# PVE's machine format (PVE::QemuServer::Machine): a type, then optional key=value options
# (viommu=, enable-s3= ...). Checked so a value can never carry a line break into the file.
MACHINE_TYPE_RE = re.compile(r"^(pc|pc(-i440fx)?-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?|q35|pc-q35-\d+(\.\d+)+(\+pve\d+)?(\.pxe)?"
                             r"|virt(-\d+(\.\d+)+)?(\+pve\d+)?)$")
MACHINE_OPTION_RE = re.compile(r"^[a-z][a-z0-9-]*=[A-Za-z0-9.+_-]+$")


class ProxmoxError(Exception):
    """A config or request that cannot be planned, with the reason."""


def conf_path(root, vmid):
    return os.path.join(root, CONF_DIR, "%d.conf" % vmid)


# ---- the file ---------------------------------------------------------------------------------

class VmConfig(object):
    """The current-config lines of a VM config and everything after them, kept verbatim."""

    def __init__(self, text):
        lines = text.splitlines(True)
        end = next((i for i, line in enumerate(lines) if SECTION_RE.match(line.rstrip("\r\n"))), len(lines))
        self.main, self.rest = lines[:end], "".join(lines[end:])
        self.sections = [line.strip() for line in lines[end:] if SECTION_RE.match(line.rstrip("\r\n"))]
        self.newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"

    def render(self):
        return "".join(self.main) + self.rest

    def _find(self, key):
        found = [i for i, line in enumerate(self.main) if _key_of(line) == key]
        if len(found) > 1:
            raise ProxmoxError("key %r appears %d times in the current config; not editing an ambiguous file"
                               % (key, len(found)))
        return found[0] if found else None

    def keys(self):
        """``{key: value}`` of the current config; a key written twice is refused, not guessed at.

        PVE keeps the last value of a repeated key, so a device in the earlier line would be
        invisible to the plan yet still in the file: adding it again would list it twice.
        """
        values = {}
        for line in self.main:
            match = KEY_RE.match(line.rstrip("\r\n"))
            if match and not line.startswith("#"):
                if match.group(1) in values:
                    self._find(match.group(1))  # raises, naming the key and how often it appears
                values[match.group(1)] = match.group(2)
        return values

    def get(self, key):
        index = self._find(key)
        return None if index is None else KEY_RE.match(self.main[index].rstrip("\r\n")).group(2)

    def set(self, key, value):
        """Make ``key`` have ``value`` (None: remove it); returns whether a line changed."""
        index = self._find(key)
        if index is None and value is None:
            return False
        if index is not None:
            if value is not None and self.get(key) == value:
                return False
            if value is None:
                del self.main[index]
            else:
                self.main[index] = "%s: %s%s" % (key, value, _ending(self.main[index], self.newline))
            return True
        # New keys go after the last key line, so they stay above any blank line that separates
        # the current config from the sections (as PVE writes it).
        last = max([i for i, line in enumerate(self.main) if _key_of(line)] or [len(self.main) - 1])
        if last >= 0 and not self.main[last].endswith("\n"):
            self.main[last] += self.newline
        self.main.insert(last + 1, "%s: %s%s" % (key, value, self.newline))
        return True


def _key_of(line):
    if line.startswith("#"):
        return None
    match = KEY_RE.match(line.rstrip("\r\n"))
    return match.group(1) if match else None


def _ending(line, default):
    if line.endswith("\r\n"):
        return "\r\n"
    return "\n" if line.endswith("\n") else ""


# ---- property strings and PCI ids ---------------------------------------------------------------

def parse_property_string(value):
    """``[(key, value)]`` of a hostpci value; the leading bare id becomes ``("host", id)``."""
    items = []
    for index, part in enumerate(value.split(",")):
        key, sep, val = part.partition("=")
        if not sep:
            if index:
                raise ProxmoxError("cannot read %r: %r has no '='" % (value, part))
            key, val = "host", part
        items.append((key.strip(), val.strip()))
    return items


def render_property_string(items):
    """The inverse of parse_property_string; ``host`` is written bare, first, as PVE writes it."""
    parts = []
    for key, val in items:
        parts.append(val if key == "host" and not parts else "%s=%s" % (key, val))
    return ",".join(parts)


def normalize_pci_id(text):
    """``0000:01:00.0`` or ``0000:01:00`` (whole slot) from any of PVE's spellings."""
    match = PCI_ID_RE.match(str(text).strip().lower())
    if not match:
        raise ProxmoxError("%r is not a PCI id like 0000:01:00.0, 01:00.0 or 01:00 (whole slot)%s"
                           % (text, _pci.yaml_number_hint(text)))
    domain, bus, slot, function = match.groups()
    base = "%s:%s:%s" % (domain or "0000", bus, slot)
    return base if function is None else "%s.%s" % (base, function)


def _overlaps(one, other):
    """Whether two normalized ids name a common function (a whole slot holds its functions)."""
    if one == other:
        return True
    return one.split(".")[0] == other.split(".")[0] and ("." not in one or "." not in other)


def _bool(text):
    lowered = str(text).lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ProxmoxError("%r is not a boolean" % (text,))


# ---- the request --------------------------------------------------------------------------------

def validate_devices(devices):
    """Normalized device requests: ``{host: [ids] or None, mapping, pcie, x_vga, rombar, index}``."""
    wanted, seen, indexes = [], [], set()
    for device in devices:
        host, mapping = device.get("host"), device.get("mapping")
        if bool(host) == bool(mapping):
            raise ProxmoxError("each device needs exactly one of host or mapping: %r" % (device,))
        ids = None
        if host:
            ids = [normalize_pci_id(part) for part in str(host).split(";")]
            for one in ids:
                clash = [other for other in seen if _overlaps(one, other)]
                if clash:
                    raise ProxmoxError("PCI device %s is requested twice (also as %s)" % (one, clash[0]))
                seen.append(one)
        elif not MAPPING_RE.match(mapping):
            raise ProxmoxError("mapping %r is not a resource mapping name" % (mapping,))
        index = device.get("index")
        if index is not None and not 0 <= index < MAX_HOSTPCI:
            raise ProxmoxError("index %d is out of range: hostpci0 to hostpci%d" % (index, MAX_HOSTPCI - 1))
        if index is not None and index in indexes:
            raise ProxmoxError("index %d is requested for two devices" % index)
        indexes.add(index)
        wanted.append({"host": ids, "mapping": mapping, "pcie": device.get("pcie"),
                       "x_vga": device.get("x_vga"), "rombar": device.get("rombar"), "index": index})
    return wanted


def _entry_identity(value):
    """``(ids or None, mapping or None)`` of an existing hostpci value."""
    items = dict(parse_property_string(value))
    if items.get("mapping"):
        return None, items["mapping"]
    host = items.get("host", "")
    try:
        return [normalize_pci_id(part) for part in host.split(";") if part], None
    except ProxmoxError:
        return None, None  # an id spelling we do not know: never matched, never touched


def _matches(want, ids, mapping):
    if want["mapping"]:
        return mapping == want["mapping"]
    return bool(ids) and any(_overlaps(a, b) for a in want["host"] for b in ids)


def hostpci_value(want, existing=None):
    """The hostpci value for ``want``, keeping the options of ``existing`` it does not manage."""
    items = parse_property_string(existing) if existing else []
    if want["mapping"]:
        identity = [("mapping", want["mapping"])]
    else:
        identity = [("host", ";".join(want["host"]))]
    # An existing entry naming the same device keeps its own spelling of the id.
    old = dict(items)
    if existing and want["host"] and old.get("host"):
        if [normalize_pci_id(p) for p in old["host"].split(";")] == want["host"]:
            identity = [("host", old["host"])]
    rest = [(k, v) for k, v in items if k not in ("host", "mapping")]
    for key, name in (("pcie", "pcie"), ("x-vga", "x_vga"), ("rombar", "rombar")):
        value = want.get(name)
        if value is None:
            continue
        current = dict(rest).get(key)
        if current is not None and _bool(current) == value:
            continue  # same meaning, spelled as the file has it
        rest = [(k, v) for k, v in rest if k != key]
        if value or key == "rombar":  # pcie=0 and x-vga=0 are PVE's defaults: left out
            rest.append((key, "1" if value else "0"))
    if existing and parse_property_string(existing) == identity + rest:
        return existing  # same content: keep the file's spelling (e.g. an explicit host=)
    return render_property_string(identity + rest)


def machine_is_q35(value):
    """``q35``, ``pc-q35-8.1``, ``type=q35,viommu=intel`` ... are all the q35 family."""
    if not value:
        return False
    first = value.split(",")[0]
    first = first.partition("=")[2] if first.startswith("type=") else first
    return bool(re.match(r"^(q35|pc-q35-[0-9.]+(\+pve\d+)?)$", first))


def merge_mmio_args(args, megabytes):
    """``args`` with the OVMF 64-bit MMIO aperture set to ``megabytes``; every other arg kept."""
    args = args or ""
    if MMIO_RE.search(args):
        return MMIO_RE.sub(lambda m: m.group(1) + str(megabytes), args, count=1)
    return (args + " " if args else "") + MMIO_ARG % megabytes


# ---- the plan -----------------------------------------------------------------------------------

def plan(text, devices, options, exclusive=False):
    """New config text and what changed: ``(text, changes, warnings)``. Raises ProxmoxError.

    ``options``: machine, bios, hugepages, numa, mmio_mb (None leaves a key as it is).
    """
    config = VmConfig(text)
    wanted = validate_devices(devices)
    changes, warnings = [], []
    entries = {}
    for key, value in config.keys().items():
        match = HOSTPCI_RE.match(key)
        if match:
            entries[int(match.group(1))] = value
    taken, placed = dict(entries), {}
    # Slots asked for by index are not handed out to devices without one, whatever the order.
    reserved = set(want["index"] for want in wanted if want["index"] is not None)
    for want in wanted:
        hits = [i for i, value in sorted(entries.items()) if _matches(want, *_entry_identity(value))]
        if len(hits) > 1:
            raise ProxmoxError("%s is in %s; not choosing between them"
                               % (_describe(want), ", ".join("hostpci%d" % i for i in hits)))
        index = want["index"] if want["index"] is not None else (hits[0] if hits else None)
        if hits and index != hits[0]:
            taken.pop(hits[0], None)
            _set(config, "hostpci%d" % hits[0], None, changes)
        if index is None:
            free = [i for i in range(MAX_HOSTPCI) if i not in taken and i not in placed and i not in reserved]
            if not free:
                raise ProxmoxError("no free hostpci slot for %s (all %d used)" % (_describe(want), MAX_HOSTPCI))
            index = free[0]
        elif index in placed:
            raise ProxmoxError("hostpci%d is asked for by both %s and %s"
                               % (index, _describe(placed[index]), _describe(want)))
        elif index in taken and index not in hits:
            raise ProxmoxError("hostpci%d already holds %r; free it or choose another index"
                               % (index, taken[index]))
        placed[index] = want
        existing = entries.get(hits[0]) if hits else None
        _set(config, "hostpci%d" % index, hostpci_value(want, existing), changes)
    if exclusive:
        for index in sorted(entries):
            if index not in placed:
                _set(config, "hostpci%d" % index, None, changes)
    _plan_options(config, options, changes)
    final = config.keys()
    pcie = [k for k, v in final.items() if HOSTPCI_RE.match(k) and _bool(dict(parse_property_string(v)).get("pcie", "0"))]
    if pcie and not machine_is_q35(final.get("machine")):
        raise ProxmoxError("%s use pcie=1, which needs machine: q35 (the config has %s); set machine: q35"
                           % (", ".join(sorted(pcie)), final.get("machine") or "no machine, i.e. i440fx"))
    if final.get("bios") == "ovmf" and "efidisk0" not in final:
        warnings.append("bios is ovmf but the VM has no efidisk0: EFI variables will not persist; add one "
                        "(qm set <vmid> --efidisk0 <storage>:1,efitype=4m) - this module does not create disks")
    if final.get("hugepages") in ("2", "1024"):
        page = int(final["hugepages"])
        memory = final.get("memory", "512").split(",")[0].replace("current=", "")
        if memory.isdigit() and int(memory) % page:
            warnings.append("memory %s MiB is not a multiple of the %d MiB huge page size; the VM will not start"
                            % (memory, page))
    if changes and config.sections and "[PENDING]" in [s.upper() for s in config.sections]:
        warnings.append("the config has a [PENDING] section; pending changes applied later may override these")
    return config.render(), changes, warnings


def _describe(want):
    return "mapping %s" % want["mapping"] if want["mapping"] else "PCI device %s" % ";".join(want["host"])


def _set(config, key, value, changes):
    before = config.get(key)
    if config.set(key, value):
        changes.append({"key": key, "before": before, "after": value})


def validate_machine(value):
    """``value`` when PVE would take it as a machine (``q35``, ``pc-q35-8.1+pve0,viommu=intel``)."""
    parts = str(value).split(",")
    kind = parts[0][len("type="):] if parts[0].startswith("type=") else parts[0]
    if not MACHINE_TYPE_RE.match(kind) or not all(MACHINE_OPTION_RE.match(p) for p in parts[1:]):
        raise ProxmoxError("machine %r is not a Proxmox VE machine type like q35, pc-q35-8.1 or pc-i440fx-8.1, "
                           "optionally followed by options like ,viommu=intel" % (value,))
    return value


def _plan_options(config, options, changes):
    machine = options.get("machine")
    if machine:
        validate_machine(machine)
    if machine and not (machine == "q35" and machine_is_q35(config.get("machine"))):
        _set(config, "machine", machine, changes)
    if options.get("bios"):
        _set(config, "bios", options["bios"], changes)
    hugepages = options.get("hugepages")
    if hugepages is not None:
        if str(hugepages) not in HUGEPAGES:
            raise ProxmoxError("hugepages must be one of %s, not %r" % (", ".join(HUGEPAGES), hugepages))
        _set(config, "hugepages", str(hugepages), changes)
    numa = options.get("numa")
    if numa is not None:
        current = config.get("numa")
        if current is None or _bool(current) != numa:
            _set(config, "numa", "1" if numa else "0", changes)
    mmio = options.get("mmio_mb")
    if mmio is not None:
        if mmio <= 0:
            raise ProxmoxError("mmio_mb must be a positive number of MiB, not %d" % mmio)
        _set(config, "args", merge_mmio_args(config.get("args"), mmio), changes)


# ---- the running VM -----------------------------------------------------------------------------

def vm_running(root, vmid, live):
    """``(running: bool or None, reason)``; None when it cannot be told (then treat as running).

    As PVE's own check: the pid file names a live process whose command line carries that pid
    file (a stale file whose pid was reused by something else is not a running VM). Under another
    ``root``, the pid means something only if that root has its own ``/proc`` (a synthetic tree).
    """
    pidfile = os.path.join(root, PID_DIR, "%d.pid" % vmid)
    try:
        with open(pidfile) as handle:
            pid = handle.read().strip()
    except (IOError, OSError):
        return False, "no pid file /%s/%d.pid" % (PID_DIR, vmid)
    if not pid.isdigit():
        return False, "pid file /%s/%d.pid holds no pid" % (PID_DIR, vmid)
    proc = os.path.join(root, "proc")
    if not live and not os.path.isdir(proc):
        return None, ("pid file /%s/%d.pid exists and %s has no /proc to check pid %s in"
                      % (PID_DIR, vmid, root, pid))
    try:
        with open(os.path.join(proc, pid, "cmdline"), "rb") as handle:
            cmdline = handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return False, "pid %s from /%s/%d.pid is not running" % (pid, PID_DIR, vmid)
    if "%d.pid" % vmid not in cmdline:
        return False, "pid %s is running but is not VM %d (stale pid file)" % (pid, vmid)
    return True, "VM %d runs as pid %s" % (vmid, pid)
