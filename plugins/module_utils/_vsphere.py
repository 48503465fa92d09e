# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""vSphere connection, lookups and task waits shared by the ESXi modules.

The connection is vmware.vmware's (its argument spec, doc fragment and PyvmomiClient), so our
modules take the same options, environment fallbacks and certificate handling as vmware.vmware's:
with validate_certs it passes pyVmomi a verifying SSL context even for loopback addresses, where
pyVmomi's own default would silently skip the check. Everything here raises VsphereError; only
the modules' main() turns it into fail_json.

Reads go through the property collector, several properties (and objects) per request, never one
attribute access per device or per host: pyVmomi turns every managed-object attribute access into
its own RetrieveProperties round trip.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import functools
import traceback
from http.client import HTTPException

try:
    from pyVim.connect import Disconnect
    from pyVim.task import WaitForTask
    from pyVmomi import vim, vmodl
    PYVMOMI_IMPORT_ERROR = None
except ImportError:
    PYVMOMI_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.vmware.vmware.plugins.module_utils.argument_spec import base_argument_spec
from ansible_collections.vmware.vmware.plugins.module_utils.clients.errors import ApiAccessError, MissingLibError
from ansible_collections.vmware.vmware.plugins.module_utils.clients.pyvmomi import PyvmomiClient


class VsphereError(Exception):
    """A vSphere call, lookup or task failed; the message is for the user. ``changed``: whether
    something had already been changed when it failed (the module reports it)."""

    def __init__(self, msg, changed=False):
        super(VsphereError, self).__init__(msg)
        self.changed = changed


class ConnectionLost(VsphereError):
    """The connection to vSphere broke during a request (refused, reset, TLS, HTTP)."""


# What a broken connection raises: socket and TLS errors, http.client's, and requests'
# ConnectionError (an OSError subclass) where a proxy or stub uses requests.
CONNECTION_ERRORS = (OSError, EOFError, HTTPException)
# What a request to a rebooting host raises: a fault (its session is gone) or a broken connection.
HOST_GONE = (VsphereError,) + CONNECTION_ERRORS + ((vmodl.MethodFault,) if PYVMOMI_IMPORT_ERROR is None else ())


def _translate(what, exc):
    """The VsphereError for a fault or broken connection while doing ``what``; None for others."""
    if PYVMOMI_IMPORT_ERROR is None and isinstance(exc, vmodl.MethodFault):
        return VsphereError("%s failed: %s" % (what, fault_text(exc)))
    if isinstance(exc, CONNECTION_ERRORS):
        return ConnectionLost("%s failed: the connection to vSphere broke: %s: %s" % (what, type(exc).__name__, exc))
    return None


def _guarded(what, func, args, kwargs):
    try:
        return func(*args, **kwargs)
    except VsphereError:
        raise
    except Exception as exc:  # pylint: disable=broad-except  # re-raised as it is unless a fault or a broken connection
        error = _translate(what, exc)
        if error is None:
            raise
        raise error


def translated(what):
    """Decorator: a vSphere fault or a broken connection raised anywhere in the function (a plain
    property read of a managed object is a request too) becomes a VsphereError naming ``what``."""
    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return _guarded(what, func, args, kwargs)
        return wrapper
    return decorate


def vsphere_argument_spec(**extra):
    """vmware.vmware's connection options (hostname, username, password, port, validate_certs,
    proxy_host, proxy_port, with VMWARE_* fallbacks) plus the module's own."""
    spec = base_argument_spec()
    spec.update(extra)
    return spec


# One VM, by name or BIOS uuid: the AnsibleModule checks that go with vm_argument_spec().
VM_ONE_OF = ("vm_name", "vm_uuid")


def vm_argument_spec(**extra):
    """vsphere_argument_spec() plus vm_name and vm_uuid (doc fragment passthrough.gpu._vm)."""
    return vsphere_argument_spec(vm_name={"type": "str"}, vm_uuid={"type": "str"}, **extra)


CERTIFICATE_HINT = ("; the server's certificate is not trusted here: add its CA to the trusted ones of the "
                    "Python that runs the module (for example through SSL_CERT_FILE), or set validate_certs: false "
                    "only where a man in the middle is no concern (a lab)")


def connect(params):
    """Log in; return the service content. Raises VsphereError with vmware.vmware's message (and,
    for an untrusted certificate, what to do about it)."""
    try:
        return PyvmomiClient(**params).content
    except (ApiAccessError, MissingLibError) as exc:
        message = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in message:
            message += CERTIFICATE_HINT
        raise VsphereError(message)


def fault_text(exc):
    """A vSphere fault as one readable line: its message, else its type."""
    msg = getattr(exc, "msg", None) or getattr(exc, "faultMessage", None) or str(exc)
    if isinstance(msg, list):
        msg = "; ".join(getattr(m, "message", str(m)) for m in msg)
    return "%s: %s" % (type(exc).__name__, msg) if msg else type(exc).__name__


def wait(task, what):
    """Wait for a task (pyVim's WaitForTask: property-collector updates, no polling loop) and
    return its result; its fault, or a broken connection, is a VsphereError (ConnectionLost)."""
    return call(what, _wait_result, task)


def _wait_result(task):
    WaitForTask(task)
    return task.info.result


def call(what, method, *args, **kwargs):
    """A synchronous API call whose fault (or broken connection: ConnectionLost) becomes a
    VsphereError naming what was attempted."""
    return _guarded(what, method, args, kwargs)


def run_task(what, method, *args, **kwargs):
    """Start a task (the call itself can fault: InvalidState, NotAuthenticated) and wait for it."""
    return wait(call(what, method, *args, **kwargs), what)


def retrieve(content, wanted):
    """Properties of several objects in one RetrieveContents: ``wanted`` is ``[(obj, [path, ...])]``
    (each object of a different type); returns ``{moId: {path: value}}``, unset properties absent."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=obj, skip=False) for obj, paths in wanted],
                         propSet=[pc.PropertySpec(type=type(obj), pathSet=list(paths)) for obj, paths in wanted])
    found = call("reading %s" % ", ".join(obj._moId for obj, paths in wanted),  # pylint: disable=protected-access
                 content.propertyCollector.RetrieveContents, [spec])
    out = {}
    for item in found or []:
        if item.missingSet:
            raise VsphereError("cannot read %s of %s: %s" % (
                ", ".join(m.path for m in item.missingSet), item.obj._moId,  # pylint: disable=protected-access
                fault_text(item.missingSet[0].fault)))
        out[item.obj._moId] = {p.name: p.val for p in item.propSet}  # pylint: disable=protected-access
    return out


def _named(content, vimtype):
    """Every object of a type with its name, in one property-collector request (not one per object)."""
    view = call("listing %s objects" % vimtype.__name__, content.viewManager.CreateContainerView,
                content.rootFolder, [vimtype], True)
    try:
        pc = vmodl.query.PropertyCollector
        spec = pc.FilterSpec(
            objectSet=[pc.ObjectSpec(obj=view, skip=True,
                                     selectSet=[pc.TraversalSpec(type=vim.view.ContainerView, path="view", skip=False)])],
            propSet=[pc.PropertySpec(type=vimtype, pathSet=["name"])])
        found = call("listing %s objects" % vimtype.__name__, content.propertyCollector.RetrieveContents, [spec])
        return [(item.obj, item.propSet[0].val if item.propSet else None) for item in found or []]
    finally:
        view.Destroy()


@translated("looking up the ESXi host")
def find_host(content, esxi_hostname=None):
    """The HostSystem named esxi_hostname; without a name, the only host (as on a direct ESXi login)."""
    hosts = _named(content, vim.HostSystem)
    if esxi_hostname:
        found = [h for h, name in hosts if name == esxi_hostname]
        if not found:
            raise VsphereError("no ESXi host named %r (hosts: %s)" % (
                esxi_hostname, ", ".join(sorted(name for host, name in hosts)) or "none"))
        return found[0]
    if len(hosts) != 1:
        raise VsphereError("esxi_hostname is required: this endpoint manages %d hosts (%s)" % (
            len(hosts), ", ".join(sorted(name for host, name in hosts))))
    return hosts[0][0]


@translated("looking up the virtual machine")
def find_vm(content, name=None, uuid=None):
    """The VirtualMachine by BIOS uuid or by name. A uuid or a name that several VMs have is
    refused (clones can keep their source's BIOS uuid)."""
    if uuid:
        found = call("looking up the VM with uuid %s" % uuid, content.searchIndex.FindAllByUuid, None, uuid, True, False)
        if not found:
            raise VsphereError("no virtual machine with uuid %s" % uuid)
        if len(found) > 1:
            raise VsphereError("%d virtual machines have the BIOS uuid %s (%s); give each clone its own uuid, "
                               "or name the VM by vm_name instead" % (len(found), uuid, ", ".join(_names(content, found))))
        return found[0]
    found = [vm for vm, vm_name in _named(content, vim.VirtualMachine) if vm_name == name]
    if not found:
        raise VsphereError("no virtual machine named %r" % name)
    if len(found) > 1:
        raise VsphereError("%d virtual machines are named %r; give vm_uuid instead" % (len(found), name))
    return found[0]


def read_many(content, objs, paths, what):
    """The same properties of several objects of one type in one request: ``{moId: {path: value}}``
    (unset properties absent). A fault is a VsphereError naming ``what``."""
    if not objs:
        return {}
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=obj, skip=False) for obj in objs],
                         propSet=[pc.PropertySpec(type=type(objs[0]), pathSet=list(paths))])
    found = call(what, content.propertyCollector.RetrieveContents, [spec]) or []
    return dict((item.obj._moId, dict((p.name, p.val) for p in item.propSet))  # pylint: disable=protected-access
                for item in found)


def _names(content, objs):
    """The names of several objects of one type, in one request (moId where a name is unset)."""
    pc = vmodl.query.PropertyCollector
    spec = pc.FilterSpec(objectSet=[pc.ObjectSpec(obj=obj, skip=False) for obj in objs],
                         propSet=[pc.PropertySpec(type=type(objs[0]), pathSet=["name"])])
    found = call("reading names", content.propertyCollector.RetrieveContents, [spec]) or []
    names = dict((item.obj._moId, item.propSet[0].val) for item in found if item.propSet)  # pylint: disable=protected-access
    return [names.get(obj._moId, obj._moId) for obj in objs]  # pylint: disable=protected-access


def signed16(value):
    """A PCI vendor/device id as the vSphere API holds it: a signed 16-bit short (0x8086 -> -32634)."""
    value = int(value, 16) if isinstance(value, str) else int(value)
    if not 0 <= value <= 0xFFFF:
        raise VsphereError("PCI id %r is not a 16-bit value" % value)
    return value - 0x10000 if value > 0x7FFF else value


def hex16(value):
    """A signed short from the API as 4 lowercase hex digits (-32634 -> '8086')."""
    return "%04x" % (int(value) & 0xFFFF)


# Everything _esxi needs of a host, in one request. host.config.pciPassthruInfo mirrors the
# pciPassthruSystem's property, but the manager is the one UpdatePassthruConfig changes, so the
# passthrough and graphics state are read from the managers themselves (same request once their
# references are known).
HOST_PATHS = ("name", "hardware.pciDevice", "configManager.pciPassthruSystem", "configManager.graphicsManager",
              "runtime.inMaintenanceMode", "runtime.bootTime", "runtime.connectionState", "summary.rebootRequired",
              "parent")
PASSTHRU_PATHS = ("pciPassthruInfo",)
GRAPHICS_PATHS = ("graphicsConfig", "graphicsInfo")


class HostApi:
    """One ESXi host as _esxi.run_* use it: bulk reads, one batched passthrough update, graphics
    update, maintenance mode and reboot. Raw pyVmomi data out, plain values in."""

    @translated("connecting to the host")
    def __init__(self, params, connector=None):
        self._params = params
        self._connector = connector or connect
        self.content = self._connector(params)
        self.host = find_host(self.content, params.get("esxi_hostname"))
        self._passthru = self._graphics = None

    @translated("reading the host")
    def read(self):
        """A dict: the HOST_PATHS properties plus ``pciPassthruInfo``, ``graphicsConfig``, ``graphicsInfo``."""
        if self._passthru is None:
            props = retrieve(self.content, [(self.host, HOST_PATHS)])[self.host._moId]  # pylint: disable=protected-access
            self._passthru = props.get("configManager.pciPassthruSystem")
            self._graphics = props.get("configManager.graphicsManager")
            if self._passthru is None:
                raise VsphereError("host %s has no PCI passthrough system (configManager.pciPassthruSystem)" %
                                   props.get("name"))
            wanted = [(self._passthru, PASSTHRU_PATHS)]
        else:
            wanted = [(self.host, HOST_PATHS), (self._passthru, PASSTHRU_PATHS)]
            props = {}
        if self._graphics is not None:
            wanted.append((self._graphics, GRAPHICS_PATHS))
        found = retrieve(self.content, wanted)
        for pair in wanted:
            props.update(found.get(pair[0]._moId, {}))  # pylint: disable=protected-access
        return props

    @translated("reading the vGPU profiles")
    def vgpu_profiles(self, parent):
        """The vGPU profiles VMs on this host may use: QueryConfigTarget(host) on the environment
        browser of the host's compute resource, as VM configuration sees them."""
        browser = retrieve(self.content, [(parent, ["environmentBrowser"])])[parent._moId].get(  # pylint: disable=protected-access
            "environmentBrowser")
        if browser is None:
            return []
        target = call("QueryConfigTarget", browser.QueryConfigTarget, host=self.host)
        return [t.vgpu for t in (getattr(target, "sharedGpuPassthroughTypes", None) or [])]

    @translated("UpdatePassthruConfig")
    def update_passthru(self, changes):
        """All changes in one UpdatePassthruConfig: ``[(pci_id, enabled, apply_now, label)]``; a
        label of None leaves the device's hardwareLabel as it is ("" clears it)."""
        configs = []
        for pci_id, enabled, apply_now, label in changes:
            config = vim.host.PciPassthruConfig(id=pci_id, passthruEnabled=enabled, applyNow=apply_now)
            if label is not None:
                config.hardwareLabel = label
            configs.append(config)
        call("UpdatePassthruConfig", self._passthru.UpdatePassthruConfig, configs)

    @translated("UpdateGraphicsConfig")
    def update_graphics(self, default_type, policy, device_types):
        """UpdateGraphicsConfig with the whole configuration (device_types: ``{pci_id: type}``)."""
        if self._graphics is None:
            raise VsphereError("this host has no graphics manager (configManager.graphicsManager)")
        config = vim.host.GraphicsConfig(
            hostDefaultGraphicsType=default_type, sharedPassthruAssignmentPolicy=policy,
            deviceType=[vim.host.GraphicsConfig.DeviceType(deviceId=k, graphicsType=v)
                        for k, v in sorted(device_types.items())])
        call("UpdateGraphicsConfig", self._graphics.UpdateGraphicsConfig, config)

    @translated("entering maintenance mode")
    def enter_maintenance(self, timeout):
        run_task("entering maintenance mode", self.host.EnterMaintenanceMode_Task, timeout=int(timeout))

    @translated("exiting maintenance mode")
    def exit_maintenance(self, timeout):
        run_task("exiting maintenance mode", self.host.ExitMaintenanceMode_Task, timeout=int(timeout))

    @translated("RebootHost_Task")
    def reboot(self):
        """RebootHost_Task without force (the host must be in maintenance mode). Returns True when
        the task's success was seen, False when the connection broke after the task was submitted:
        on a direct ESXi login the host can go down before its answer arrives, so the caller goes
        on waiting for the host to come back (boot_state) rather than failing."""
        task = call("RebootHost_Task", self.host.RebootHost_Task, force=False)
        try:
            wait(task, "RebootHost_Task")
        except ConnectionLost:
            return False  # the host is going down
        return True

    def boot_state(self):
        """(connection state, boot time), or None while the host cannot be reached. On a direct
        ESXi login the reboot ends the session: log in again, and keep trying until it answers."""
        try:
            props = retrieve(self.content, [(self.host, ["runtime.connectionState", "runtime.bootTime"])])
            props = props.get(self.host._moId, {})  # pylint: disable=protected-access
            return str(props.get("runtime.connectionState")), props.get("runtime.bootTime")
        except HOST_GONE:
            pass  # the host (or the session) is gone while it reboots
        try:
            # The old session died with the host; its logout at exit would only fail.
            atexit.unregister(Disconnect)
            self.content = self._connector(self._params)
            self.host = find_host(self.content, self._params.get("esxi_hostname"))
            self._passthru = self._graphics = None  # bound to the old session: read() looks them up again
        except HOST_GONE:
            pass
        return None
