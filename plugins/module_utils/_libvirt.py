# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Passthrough settings in a libvirt domain's XML, and the virsh calls that read and define it.

Pure planning on XML text (xml.etree.ElementTree): ``plan_domain`` returns the new XML and a
list of what changed; elements it does not manage are kept as they were. ``Virsh`` runs virsh
through a ``run(argv) -> (rc, stdout, stderr)`` callable and raises ``LibvirtError``.
"""

from __future__ import absolute_import, division, print_function

import os
import re
import tempfile
import xml.etree.ElementTree as ET

from ansible_collections.passthrough.gpu.plugins.module_utils import _pci

__metaclass__ = type

MMIO64_ENTRY = "opt/ovmf/X-PciMmio64Mb"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
QEMU_COMMANDLINE = "{%s}commandline" % QEMU_NS
QEMU_ARG = "{%s}arg" % QEMU_NS
# Serialized as libvirt writes it (xmlns:qemu on <domain>), not as ns0.
ET.register_namespace("qemu", QEMU_NS)
PAGE_KIB = {"2M": 2048, "1G": 1048576}
UNIT_KIB = {"b": 1.0 / 1024, "bytes": 1.0 / 1024, "k": 1, "kib": 1, "kb": 1000.0 / 1024,
            "m": 1024, "mib": 1024, "mb": 1000000.0 / 1024, "g": 1048576, "gib": 1048576,
            "gb": 1000000000.0 / 1024}
CPUSET_RE = re.compile(r"^\^?\d+(-\d+)?(,\^?\d+(-\d+)?)*$")


class LibvirtError(Exception):
    """A refusal or failure; ``changed`` is true when libvirt had already taken a definition."""

    def __init__(self, message, changed=False):
        super(LibvirtError, self).__init__(message)
        self.changed = changed


def parse_cpuset(text):
    """libvirt's cpuset syntax (``0-3,^2,6``) as a set of CPU numbers; libvirt rewrites it as
    ranges on define, so plans compare sets, not strings."""
    text = str(text).replace(" ", "")
    if not CPUSET_RE.match(text):
        raise LibvirtError("malformed cpuset %r: expected CPU numbers and ranges like 0-3,6 (^N excludes)" % text)
    cpus, excluded = set(), set()
    for part in text.split(","):
        target = excluded if part.startswith("^") else cpus
        low, _sep, high = part.lstrip("^").partition("-")
        if high and int(high) < int(low):
            raise LibvirtError("malformed cpuset %r: range %s goes down" % (text, part))
        target.update(range(int(low), int(high or low) + 1))
    if not cpus - excluded:
        raise LibvirtError("cpuset %r names no CPU" % text)
    return cpus - excluded


def normalize_hostdevs(root, addresses, all_functions, check_host):
    """Canonical addresses, expanded to every function of their slot on the host when asked;
    with ``check_host``, each must be a PCI device under ``root``'s sysfs."""
    result = []
    for text in addresses:
        try:
            address = _pci.normalize_address(text)
        except _pci.PciError as exc:
            raise LibvirtError(str(exc))
        wanted = [address]
        if all_functions:
            slot = _pci.slot_of(address)
            try:
                wanted = [a for a in _pci.list_addresses(root) if _pci.slot_of(a) == slot] or wanted
            except _pci.PciError as exc:
                raise LibvirtError("all_functions: %s" % exc)
        for item in wanted:
            if check_host and not os.path.isdir(os.path.join(root, _pci.PCI_DEVICES, item)):
                raise LibvirtError("%s is not a PCI device on this host (no %s)"
                                   % (item, os.path.join("/", _pci.PCI_DEVICES, item)))
            if item not in result:
                result.append(item)
    return result


def _address_key(address):
    """``0000:01:00.0`` -> (domain, bus, slot, function) as integers."""
    domain, bus, rest = address.split(":")
    slot, function = rest.split(".")
    return tuple(int(part, 16) for part in (domain, bus, slot, function))


def _hostdev_key(hostdev):
    if hostdev.get("mode", "subsystem") != "subsystem" or hostdev.get("type") != "pci":
        return None
    source = hostdev.find("source/address")
    if source is None:
        return None
    try:
        return tuple(int(source.get(name, "0"), 0) for name in ("domain", "bus", "slot", "function"))
    except ValueError:
        return None


def _hostdev_element(address):
    domain, bus, slot, function = _address_key(address)
    hostdev = ET.Element("hostdev", {"mode": "subsystem", "type": "pci", "managed": "yes"})
    ET.SubElement(ET.SubElement(hostdev, "source"), "address", {
        "domain": "0x%04x" % domain, "bus": "0x%02x" % bus, "slot": "0x%02x" % slot, "function": "0x%x" % function})
    return hostdev


def _child(parent, tag, changes=None, what=None):
    """The first ``tag`` child of ``parent``, created (and noted in ``changes``) when missing."""
    found = parent.find(tag)
    if found is None:
        found = ET.SubElement(parent, tag)
        if changes is not None and what:
            changes.append(what)
    return found


def _remove_if_empty(parent, element):
    if element is not None and len(element) == 0 and not element.attrib and not (element.text or "").strip():
        parent.remove(element)


def _set(element, name, value, changes, what):
    if element.get(name) != value:
        element.set(name, value)
        changes.append(what)


def _page_kib(page):
    unit = (page.get("unit") or "KiB").lower()
    try:
        return int(float(page.get("size", "0")) * UNIT_KIB[unit])
    except (KeyError, ValueError):
        return None


class DomainPlan(object):
    """What the caller wants; None (or an empty value) leaves that part of the domain alone."""

    def __init__(self, hostdevs=None, hostdev_state="present", hugepages=None, hugepage_size=None,
                 vcpu_pins=None, emulator_cpuset=None, cpu_mode=None, hyperv_vendor_id=None,
                 kvm_hidden=None, firmware=None, mmio64_mb=None):
        self.hostdevs = list(hostdevs or [])
        self.hostdev_state = hostdev_state
        self.hugepages = hugepages
        self.hugepage_size = hugepage_size
        self.vcpu_pins = dict(vcpu_pins or {})
        self.emulator_cpuset = emulator_cpuset
        self.cpu_mode = cpu_mode
        self.hyperv_vendor_id = hyperv_vendor_id
        self.kvm_hidden = kvm_hidden
        self.firmware = firmware
        self.mmio64_mb = mmio64_mb

    def validate(self):
        """Refusals that need no domain: conflicting or malformed options."""
        if self.hugepage_size and self.hugepages is not True:
            raise LibvirtError("hugepage_size needs hugepages=true")
        if self.hugepage_size and self.hugepage_size not in PAGE_KIB:
            raise LibvirtError("hugepage_size must be one of %s" % ", ".join(sorted(PAGE_KIB)))
        vendor = self.hyperv_vendor_id
        if vendor and (len(vendor) > 12 or not re.match(r"^[\x21-\x7e]+$", vendor)):
            raise LibvirtError("hyperv_vendor_id %r: at most 12 printable characters, no spaces"
                               % self.hyperv_vendor_id)
        if self.mmio64_mb is not None and self.mmio64_mb < 0:
            raise LibvirtError("mmio64_mb must be 0 (remove) or a size in MiB")
        pins = {}
        for vcpu, cpuset in self.vcpu_pins.items():
            try:
                number = int(vcpu)
            except (TypeError, ValueError):
                raise LibvirtError("vcpu_pins keys are vCPU numbers, not %r" % (vcpu,))
            if number < 0:
                raise LibvirtError("vcpu_pins: vCPU %d is negative" % number)
            pins[number] = (str(cpuset), parse_cpuset(cpuset))
        self.vcpu_pins = pins
        if self.emulator_cpuset is not None:
            parse_cpuset(self.emulator_cpuset)
        return self

    def host_cpus(self):
        """Every host CPU the plan pins to."""
        cpus = set()
        for _text, cpuset in self.vcpu_pins.values():
            cpus |= cpuset
        if self.emulator_cpuset is not None:
            cpus |= parse_cpuset(self.emulator_cpuset)
        return cpus


def parse_domain(xml_text):
    try:
        domain = ET.fromstring(xml_text)
    except ET.ParseError as exc:
        raise LibvirtError("domain XML does not parse: %s" % exc)
    if domain.tag != "domain":
        raise LibvirtError("not a libvirt domain XML (root element <%s>)" % domain.tag)
    return domain


def plan_domain(xml_text, plan):
    """Apply ``plan`` to the domain XML text; returns (before, after, changes) with before and
    after serialized the same way, so their diff shows only what changed."""
    domain = parse_domain(xml_text)
    if domain.get("type") not in ("kvm", "qemu"):
        raise LibvirtError("domain type %r: only QEMU/KVM domains (type kvm or qemu) can take PCI hostdevs"
                           % domain.get("type"))
    before = serialize(domain)
    changes = []
    _plan_hostdevs(domain, plan, changes)
    _plan_hugepages(domain, plan, changes)
    _plan_pinning(domain, plan, changes)
    _plan_cpu(domain, plan, changes)
    _plan_features(domain, plan, changes)
    _plan_firmware(domain, plan, changes)
    return before, serialize(domain), changes


def _plan_hostdevs(domain, plan, changes):
    if not plan.hostdevs:
        return
    devices = _child(domain, "devices")
    present = {}
    for hostdev in devices.findall("hostdev"):
        key = _hostdev_key(hostdev)
        if key is not None:
            present.setdefault(key, []).append(hostdev)
    for address in plan.hostdevs:
        found = present.get(_address_key(address), [])
        if plan.hostdev_state == "absent":
            for hostdev in found:
                devices.remove(hostdev)
                changes.append("hostdev %s removed" % address)
        elif not found:
            devices.append(_hostdev_element(address))
            changes.append("hostdev %s added" % address)
        else:
            for hostdev in found:
                # managed='yes': libvirt detaches the device to vfio-pci on start and gives it back on stop.
                _set(hostdev, "managed", "yes", changes, "hostdev %s managed=yes" % address)


def _plan_hugepages(domain, plan, changes):
    if plan.hugepages is None:
        return
    backing = domain.find("memoryBacking")
    hugepages = backing.find("hugepages") if backing is not None else None
    if not plan.hugepages:
        if hugepages is not None:
            backing.remove(hugepages)
            _remove_if_empty(domain, backing)
            changes.append("hugepages removed")
        return
    backing = _child(domain, "memoryBacking")
    if hugepages is None:
        hugepages = ET.SubElement(backing, "hugepages")
        changes.append("hugepages added")
    if plan.hugepage_size:
        want = PAGE_KIB[plan.hugepage_size]
        pages = hugepages.findall("page")
        if [_page_kib(p) for p in pages if p.get("nodeset") is None] != [want] or \
                any(p.get("nodeset") is not None for p in pages):
            for page in pages:
                hugepages.remove(page)
            ET.SubElement(hugepages, "page", {"size": str(want), "unit": "KiB"})
            changes.append("hugepage size %s" % plan.hugepage_size)


def _vcpu_count(domain):
    vcpu = domain.find("vcpu")
    try:
        return int(vcpu.text.strip()) if vcpu is not None and vcpu.text else 1
    except ValueError:
        raise LibvirtError("the domain's <vcpu> is not a number: %r" % vcpu.text)


def _plan_pinning(domain, plan, changes):
    if not plan.vcpu_pins and plan.emulator_cpuset is None:
        return
    count = _vcpu_count(domain)
    too_high = sorted(v for v in plan.vcpu_pins if v >= count)
    if too_high:
        raise LibvirtError("vcpu_pins names vCPU %s but the domain has %d vCPU(s) (0-%d)"
                           % (", ".join(str(v) for v in too_high), count, count - 1))
    cputune = _child(domain, "cputune")
    if plan.vcpu_pins:
        # The plan is the whole pinning: pins of vCPUs it does not name go.
        existing = {}
        for pin in cputune.findall("vcpupin"):
            try:
                vcpu = int(pin.get("vcpu"))
            except (TypeError, ValueError):
                vcpu = None
            if vcpu not in plan.vcpu_pins or vcpu in existing:
                cputune.remove(pin)
                changes.append("vcpupin vcpu=%s removed" % pin.get("vcpu"))
            else:
                existing[vcpu] = pin
        index = 0
        for vcpu in sorted(plan.vcpu_pins):
            text, cpus = plan.vcpu_pins[vcpu]
            pin = existing.get(vcpu)
            if pin is None:
                pin = ET.Element("vcpupin", {"vcpu": str(vcpu), "cpuset": text})
                cputune.insert(index, pin)
                changes.append("vcpupin vcpu=%d cpuset=%s" % (vcpu, text))
            elif _safe_cpuset(pin.get("cpuset")) != cpus:
                pin.set("cpuset", text)
                changes.append("vcpupin vcpu=%d cpuset=%s" % (vcpu, text))
            index = list(cputune).index(pin) + 1
    if plan.emulator_cpuset is not None:
        emulator = cputune.find("emulatorpin")
        if emulator is None:
            ET.SubElement(cputune, "emulatorpin", {"cpuset": plan.emulator_cpuset})
            changes.append("emulatorpin cpuset=%s" % plan.emulator_cpuset)
        elif _safe_cpuset(emulator.get("cpuset")) != parse_cpuset(plan.emulator_cpuset):
            emulator.set("cpuset", plan.emulator_cpuset)
            changes.append("emulatorpin cpuset=%s" % plan.emulator_cpuset)


def _safe_cpuset(text):
    try:
        return parse_cpuset(text or "")
    except LibvirtError:
        return None


def _plan_cpu(domain, plan, changes):
    if not plan.cpu_mode:
        return
    cpu = domain.find("cpu")
    if cpu is None:
        cpu = ET.SubElement(domain, "cpu")
    if cpu.get("mode") == plan.cpu_mode:
        return
    cpu.set("mode", plan.cpu_mode)
    # A named model and its match policy belong to mode='custom'; topology, cache, features and
    # NUMA cells stay.
    for tag in ("model", "vendor"):
        for child in cpu.findall(tag):
            cpu.remove(child)
    cpu.attrib.pop("match", None)
    changes.append("cpu mode=%s" % plan.cpu_mode)


def _plan_features(domain, plan, changes):
    if plan.hyperv_vendor_id is None and plan.kvm_hidden is None:
        return
    features = domain.find("features")
    created = features is None
    if created:
        features = ET.SubElement(domain, "features")
    if plan.hyperv_vendor_id is not None:
        hyperv = features.find("hyperv")
        vendor = hyperv.find("vendor_id") if hyperv is not None else None
        if plan.hyperv_vendor_id == "":
            if vendor is not None:
                hyperv.remove(vendor)
                _remove_if_empty(features, hyperv)
                changes.append("hyperv vendor_id removed")
        else:
            if hyperv is None:
                hyperv = ET.SubElement(features, "hyperv")
            if vendor is None:
                vendor = ET.SubElement(hyperv, "vendor_id")
            if vendor.get("state") != "on" or vendor.get("value") != plan.hyperv_vendor_id:
                vendor.set("state", "on")
                vendor.set("value", plan.hyperv_vendor_id)
                changes.append("hyperv vendor_id=%s" % plan.hyperv_vendor_id)
    if plan.kvm_hidden is not None:
        kvm = features.find("kvm")
        hidden = kvm.find("hidden") if kvm is not None else None
        if plan.kvm_hidden and (hidden is None or hidden.get("state") != "on"):
            hidden = _child(_child(features, "kvm"), "hidden")
            hidden.set("state", "on")
            changes.append("kvm hidden state=on")
        elif not plan.kvm_hidden and hidden is not None:
            kvm.remove(hidden)
            _remove_if_empty(features, kvm)
            changes.append("kvm hidden removed")
    if created:
        _remove_if_empty(domain, features)


def _is_efi(os_element):
    if os_element.get("firmware") == "efi":
        return True
    loader = os_element.find("loader")
    # A loader set by hand (no autoselection) is UEFI when it is a pflash image of OVMF/edk2.
    path = (loader.text or "") if loader is not None else ""
    return loader is not None and loader.get("type") == "pflash" and bool(re.search(r"(?i)ovmf|edk2", path))


def _plan_firmware(domain, plan, changes):
    os_element = domain.find("os")
    if plan.firmware == "efi":
        if os_element is None:
            raise LibvirtError("the domain has no <os> element")
        if domain.find("features/acpi") is None:
            raise LibvirtError("firmware=efi needs ACPI: add <acpi/> to the domain's <features> (libvirt refuses "
                               "UEFI without it on x86)")
        if not _is_efi(os_element):
            if os_element.find("loader") is not None:
                raise LibvirtError("the domain sets its own <loader> (%s), not OVMF: change it by hand, or remove "
                                   "it so firmware='efi' can pick OVMF" % (os_element.find("loader").text or "").strip())
            os_element.set("firmware", "efi")
            changes.append("os firmware=efi")
    if plan.mmio64_mb is None:
        return
    # Through <qemu:commandline>, not <sysinfo type='fwcfg'>: libvirt 9.0 refuses fw_cfg names under
    # opt/ovmf/ there ("That firmware name is reserved", measured in the lab).
    commandline = domain.find(QEMU_COMMANDLINE)
    args = list(commandline.findall(QEMU_ARG)) if commandline is not None else []
    pairs = [(flag, value) for flag, value in zip(args, args[1:])
             if flag.get("value") == "-fw_cfg" and (value.get("value") or "").startswith("name=%s," % MMIO64_ENTRY)]
    if plan.mmio64_mb == 0:
        for flag, value in pairs:
            commandline.remove(flag)
            commandline.remove(value)
            changes.append("qemu -fw_cfg %s removed" % MMIO64_ENTRY)
        if commandline is not None and not len(commandline):
            domain.remove(commandline)
        return
    if os_element is None or not _is_efi(os_element):
        raise LibvirtError("mmio64_mb is read by OVMF only: the domain does not boot UEFI (set firmware=efi)")
    want = "name=%s,string=%d" % (MMIO64_ENTRY, plan.mmio64_mb)
    if [value.get("value") for _flag, value in pairs] == [want]:
        return
    for flag, value in pairs:
        commandline.remove(flag)
        commandline.remove(value)
    if commandline is None:
        commandline = ET.SubElement(domain, QEMU_COMMANDLINE)
    ET.SubElement(commandline, QEMU_ARG, {"value": "-fw_cfg"})
    ET.SubElement(commandline, QEMU_ARG, {"value": want})
    changes.append("qemu -fw_cfg %s" % want)


def _indent(element, level=0):
    """Two-space indentation like virsh's, on whitespace-only text only (no mixed content touched)."""
    pad = "\n" + "  " * (level + 1)
    if len(element):
        if not (element.text or "").strip():
            element.text = pad
        for child in element:
            _indent(child, level + 1)
            if not (child.tail or "").strip():
                child.tail = pad
        element[-1].tail = "\n" + "  " * level


def serialize(domain):
    copy = ET.fromstring(ET.tostring(domain))
    _indent(copy)
    copy.tail = None
    return ET.tostring(copy, encoding="unicode") + "\n"


def read_online_cpus(root):
    """Host CPUs online (``/sys/devices/system/cpu/online``), or None when it cannot be read."""
    try:
        with open(os.path.join(root, "sys/devices/system/cpu/online")) as handle:
            return parse_cpuset(handle.read().strip())
    except (IOError, OSError, LibvirtError):
        return None


class Virsh(object):
    """virsh against one connection URI; ``run(argv)`` returns (rc, stdout, stderr)."""

    def __init__(self, run, uri, virsh="virsh"):
        self.run = run
        self.base = [virsh, "-c", uri]
        self.uri = uri
        self.commands = []

    def _call(self, *args, **kwargs):
        argv = self.base + list(args)
        if kwargs.get("record", False):
            self.commands.append(argv)
        rc, out, err = self.run(argv)
        if rc != 0:
            message = (err or out).strip()
            if "failed to get domain" in message or "Domain not found" in message:
                raise LibvirtError("no domain %r on %s (virsh: %s)" % (args[-1], self.uri, message))
            raise LibvirtError("%s failed (rc %d): %s" % (" ".join(argv), rc, message))
        return out

    def state(self, name):
        return self._call("domstate", name).strip()

    def dumpxml(self, name, inactive=True):
        return self._call(*(["dumpxml", "--inactive", name] if inactive else ["dumpxml", name]))

    def define(self, xml_text, tmpdir=None):
        handle, path = tempfile.mkstemp(prefix="passthrough-gpu-domain-", suffix=".xml", dir=tmpdir)
        try:
            with os.fdopen(handle, "w") as out:
                out.write(xml_text)
            # --validate: libvirt checks the XML against its schema and refuses before changing anything.
            self._call("define", "--validate", path, record=True)
        finally:
            os.unlink(path)


INACTIVE_STATES = ("shut off", "crashed")


def check_pins_online(plan, online_cpus):
    """Refuse pins to host CPUs that are not online (``online_cpus`` None: cannot tell, accept)."""
    if online_cpus is not None:
        missing = sorted(plan.host_cpus() - online_cpus)
        if missing:
            raise LibvirtError("pinning names host CPU(s) %s, not online on this host (online: %s)"
                               % (",".join(str(c) for c in missing), format_cpuset(online_cpus)))


def ensure_domain(virsh, name, plan, check_mode, online_cpus=None, tmpdir=None):
    """Make the persistent definition of ``name`` follow ``plan``: read, plan, one gate, define,
    read back. Returns the module's result (without ``diff`` headers' wording decided elsewhere)."""
    check_pins_online(plan, online_cpus)
    state = virsh.state(name)
    before, after, changes = plan_domain(virsh.dumpxml(name), plan)
    if changes and check_mode:
        virsh.commands.append(virsh.base + ["define", "--validate", "<new definition>"])
    elif changes:
        virsh.define(after, tmpdir=tmpdir)
        left = plan_domain(virsh.dumpxml(name), plan)[2]
        if left:
            raise LibvirtError("libvirt accepted the definition but did not keep: %s" % "; ".join(left), changed=True)
    active = state not in INACTIVE_STATES
    restart_required = False
    if active:
        # The running guest keeps its old configuration until it is restarted: compare it too.
        try:
            restart_required = bool(plan_domain(virsh.dumpxml(name, inactive=False), plan)[2])
        except LibvirtError:
            restart_required = True
    return {"changed": bool(changes), "changes": changes, "state": state, "active": active,
            "restart_required": restart_required, "commands": virsh.commands,
            "diff": {"before": before, "after": after,
                     "before_header": "%s (persistent definition)" % name,
                     "after_header": "%s (persistent definition)" % name}}


def format_cpuset(cpus):
    """{0, 1, 2, 5} -> '0-2,5'."""
    parts, ordered = [], sorted(cpus)
    start = prev = None
    for cpu in ordered + [None]:
        if cpu is not None and prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        start = prev = cpu
    return ",".join(parts)
