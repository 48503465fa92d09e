# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Rebinding PCI functions on the running kernel, driverctl's way.

Per function: ``driver_override``, unbind from the current driver, ``drivers_probe``, then read
the ``driver`` link back. Never ``new_id``: it would hand every device with that ID to vfio-pci.
All writes go through ``host.write(path, value)`` so tests run the plan against a tree in
tmp_path; ``host.run(argv)`` runs commands (modprobe) and ``host.sleep`` waits.
"""

from __future__ import absolute_import, division, print_function

import os

from ansible_collections.passthrough.gpu.plugins.module_utils import _pci

__metaclass__ = type

VFIO = "vfio-pci"
DEVICES = "sys/bus/pci/devices"
DRIVERS = "sys/bus/pci/drivers"
PROBE = "sys/bus/pci/drivers_probe"
# drivers_probe is synchronous unless a driver probes asynchronously; wait a little for those.
VERIFY_TRIES = 20
VERIFY_DELAY = 0.1
DEV_VFIO_TRIES = 50
# driverctl clears an override with a newline; the kernel reads an empty value as "none".
CLEAR = "\n"


class RuntimeBindError(Exception):
    """Binding on the running kernel failed (after putting back what could be put back)."""


def driver_of(root, address):
    return _pci.link_name(os.path.join(root, DEVICES, address, "driver"))


def override_of(root, address):
    """The driver_override value, None when unset (the kernel shows ``(null)``)."""
    try:
        with open(os.path.join(root, DEVICES, address, "driver_override")) as handle:
            value = handle.read().strip()
    except (IOError, OSError):
        return None
    return None if value in ("", "(null)") else value


def driver_loaded(root, driver):
    return os.path.isdir(os.path.join(root, DRIVERS, driver))


def module_drivers(root, module):
    """PCI driver names a loaded module registers (``/sys/module/<m>/drivers/pci:<name>``)."""
    try:
        names = os.listdir(os.path.join(root, "sys/module", module, "drivers"))
    except OSError:
        return []
    return sorted(n.split(":", 1)[1] for n in names if n.startswith("pci:"))


class Runtime(object):
    """Records every sysfs write and command, performing them unless in check mode."""

    def __init__(self, root, host, check_mode):
        self.root = root
        self.host = host
        self.check_mode = check_mode
        self.writes = []
        self.commands = []

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def write(self, path, value):
        self.writes.append({"path": "/" + os.path.relpath(path, self.root), "value": value})
        if not self.check_mode:
            self.host.write(path, value)

    def modprobe(self, module):
        argv = ["modprobe", module]
        entry = {"argv": argv, "ran": not self.check_mode, "rc": None}
        self.commands.append(entry)
        if self.check_mode:
            return
        binary = self.host.which("modprobe")
        if not binary:
            raise RuntimeBindError("modprobe is not installed; cannot load %s" % module)
        rc, _out, err = self.host.run([binary, module])
        entry["rc"] = rc
        if rc != 0:
            raise RuntimeBindError("modprobe %s failed (rc %d): %s" % (module, rc, err.strip()))

    def wait_for(self, predicate, tries):
        for attempt in range(tries):
            if predicate():
                return True
            if attempt + 1 < tries:
                self.host.sleep(VERIFY_DELAY)
        return False

    def _probe(self, address, override, current):
        """driverctl's sequence: override, unbind, drivers_probe."""
        device = self.path(DEVICES, address)
        self.write(os.path.join(device, "driver_override"), override)
        if current:
            self.write(os.path.join(device, "driver", "unbind"), address)
        self.write(self.path(PROBE), address)

    def bind(self, functions):
        """Put every function on vfio-pci; returns ``{address: driver after}``.

        ``functions`` are ``(address, current driver)``. If one fails, every function touched
        here goes back to its previous driver before the error is raised.
        """
        after = {}
        todo = [(a, d) for a, d in functions if d != VFIO]
        for address, driver in functions:
            after[address] = driver
        if not todo:
            return after
        if not driver_loaded(self.root, VFIO):
            self.modprobe(VFIO)
        done = []
        for address, driver in todo:
            done.append((address, driver))
            try:
                self._probe(address, VFIO, driver)
                ok = self.check_mode or self.wait_for(
                    lambda a=address: driver_of(self.root, a) == VFIO, VERIFY_TRIES)
            except (IOError, OSError) as exc:
                ok, reason = False, "writing sysfs failed: %s" % exc
            else:
                reason = "its driver is %s, not vfio-pci" % (driver_of(self.root, address) or "none")
            if not ok:
                restored = self.rollback(done)
                raise RuntimeBindError(
                    "binding %s to vfio-pci failed: %s. Put back: %s" % (address, reason, restored))
            after[address] = VFIO
        return after

    def rollback(self, done):
        """Clear the override and let each function's previous driver take it back."""
        notes = []
        for address, previous in reversed(done):
            device = self.path(DEVICES, address)
            try:
                self.write(os.path.join(device, "driver_override"), CLEAR)
                current = driver_of(self.root, address)
                if current and current != previous:
                    self.write(os.path.join(device, "driver", "unbind"), address)
                if previous and driver_of(self.root, address) != previous:
                    self.write(self.path(PROBE), address)
            except (IOError, OSError) as exc:
                notes.append("%s: %s" % (address, exc))
                continue
            now = driver_of(self.root, address)
            notes.append("%s on %s%s" % (address, now or "no driver",
                                         "" if now == previous else " (was %s)" % (previous or "none")))
        return "; ".join(notes)

    def unbind(self, functions):
        """Give functions on vfio-pci back to their native driver; returns ``{address: driver after}``.

        ``functions`` are ``(address, current driver, native module or None)``. The override names
        the native driver for the probe, so a vfio-pci still loaded with ``ids=`` cannot take the
        device back, and is cleared after.
        """
        after = {}
        for address, driver, module in functions:
            after[address] = driver
            if driver != VFIO and override_of(self.root, address) != VFIO:
                continue
            native = self.native_driver(module)
            self._probe(address, native or CLEAR, driver)
            if native:
                self.write(self.path(DEVICES, address, "driver_override"), CLEAR)
            if self.check_mode:
                after[address] = native
                continue
            if not self.wait_for(lambda a=address, n=native: self._given_back(a, n), VERIFY_TRIES):
                raise RuntimeBindError("giving %s back to %s failed: its driver is %s" % (
                    address, native or "its native driver", driver_of(self.root, address) or "none"))
            after[address] = driver_of(self.root, address)
        return after

    def _given_back(self, address, native):
        current = driver_of(self.root, address)
        return current == native if native else current != VFIO

    def native_driver(self, module):
        """The PCI driver name of ``module``, loading the module first when it is not loaded."""
        if not module:
            return None
        names = module_drivers(self.root, module)
        if not names:
            self.modprobe(module)
            names = module_drivers(self.root, module)
        if not names:
            # Check mode, or a module whose driver has another name: the module name is the
            # usual driver name (qxl, snd_hda_intel, nouveau, amdgpu, nvidia).
            return module
        return names[0]

    def wait_for_group(self, group):
        """/dev/vfio/<group> appears once every function of the group is on vfio-pci."""
        node = self.path("dev/vfio", str(group))
        if self.check_mode or self.wait_for(lambda: os.path.exists(node), DEV_VFIO_TRIES):
            return
        raise RuntimeBindError(
            "the group's functions are on vfio-pci but /dev/vfio/%d did not appear; "
            "is vfio_iommu_type1 loadable and the IOMMU on?" % group)
