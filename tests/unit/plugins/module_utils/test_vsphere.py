# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_vsphere: PCI id conversions, fault messages, bulk reads and lookups, HostApi's requests.

Real pyVmomi objects on a fake SOAP stub and a fake property collector that log each request, so
the tests count requests as the simulator's request log would (tests/vcsim).
"""

import http.client
from types import SimpleNamespace as NS

import pytest
from pyVmomi import vim, vmodl

from ansible_collections.passthrough.gpu.plugins.module_utils import _vsphere
from ansible_collections.passthrough.gpu.plugins.module_utils._vsphere import VsphereError


@pytest.mark.parametrize("value, signed", [
    (0x10DE, 4318), ("10de", 4318), ("10DE", 4318), (0x8086, -32634), ("8086", -32634),
    (0x7FFF, 0x7FFF), (0x8000, -32768), (0xFFFF, -1), (0, 0), (0x1EB8, 0x1EB8),
])
def test_signed16(value, signed):
    assert _vsphere.signed16(value) == signed


@pytest.mark.parametrize("value", [0x10000, -1, "12345"])
def test_signed16_refuses_what_is_not_16_bit(value):
    with pytest.raises(VsphereError, match="not a 16-bit value"):
        _vsphere.signed16(value)


@pytest.mark.parametrize("signed, text", [(4318, "10de"), (-32634, "8086"), (-1, "ffff"), (0x536, "0536"), (-32768, "8000")])
def test_hex16(signed, text):
    assert _vsphere.hex16(signed) == text
    assert _vsphere.signed16(text) == signed  # round trip


def test_fault_text_and_call():
    fault = vim.fault.HostConfigFault(faultMessage=[vmodl.LocalizableMessage(key="k", message="not capable")])
    assert _vsphere.fault_text(fault) == "vim.fault.HostConfigFault: not capable"
    assert _vsphere.fault_text(vim.fault.InvalidState(msg="not in maintenance mode")) == \
        "vim.fault.InvalidState: not in maintenance mode"

    def refuse(*_):
        raise vim.fault.InvalidLogin(msg="Cannot complete login")
    with pytest.raises(VsphereError, match="^logging in failed: vim.fault.InvalidLogin: Cannot complete login$"):
        _vsphere.call("logging in", refuse, 1)
    assert _vsphere.call("adding", lambda a, b=0: a + b, 1, b=2) == 3


class Stub:
    """A SOAP stub: managed-object method calls land here and are logged."""

    def __init__(self, log):
        self.log = log

    def InvokeMethod(self, mo, info, args):  # pylint: disable=invalid-name  # pyVmomi's stub interface
        self.log.append((info.name, mo._moId, args))  # pylint: disable=protected-access


class Collector:
    """A property collector over {moId: {path: value}}; container views list ``views``."""

    def __init__(self, log, objects, views=None):
        self.log, self.objects, self.views = log, objects, views or {}

    def RetrieveContents(self, specs):  # pylint: disable=invalid-name
        [spec] = specs
        self.log.append(("RetrieveContents", [o.obj._moId for o in spec.objectSet], None))  # pylint: disable=protected-access
        out = []
        for obj_spec in spec.objectSet:
            targets = self.views.get(obj_spec.obj._moId, [obj_spec.obj]) if obj_spec.skip else [obj_spec.obj]  # pylint: disable=protected-access
            for obj in targets:
                [paths] = [p.pathSet for p in spec.propSet if isinstance(obj, p.type)]
                props = self.objects.get(obj._moId, {})  # pylint: disable=protected-access
                # ObjectContent's shape; plain objects, as pyVmomi's type checks refuse fake values
                if "fail" in props:
                    out.append(NS(obj=obj, propSet=[], missingSet=[NS(
                        path=paths[0], fault=vim.fault.NoPermission(msg="no read privilege"))]))
                    continue
                out.append(NS(obj=obj, missingSet=[], propSet=[NS(name=p, val=props[p]) for p in paths if p in props]))
        return out


def content(hosts=("esx1", "esx2"), vms=(), extra=None):
    """A vCenter's service content with these host and VM names; returns (content, request log)."""
    log = []
    stub = Stub(log)
    host_objs = [vim.HostSystem("host-%d" % i, stub) for i in range(len(hosts))]
    vm_objs = [vim.VirtualMachine("vm-%d" % i, stub) for i in range(len(vms))]
    objects = dict((o._moId, {"name": n}) for o, n in zip(host_objs + vm_objs, list(hosts) + list(vms)))  # pylint: disable=protected-access
    for mo_id, props in (extra or {}).items():
        objects.setdefault(mo_id, {}).update(props)

    def create_view(_root, types, _recursive):
        log.append(("CreateContainerView", None, None))
        view = vim.view.ContainerView("view-%s" % types[0].__name__, stub)
        collector.views[view._moId] = host_objs if types == [vim.HostSystem] else vm_objs  # pylint: disable=protected-access
        return view

    collector = Collector(log, objects)
    service = NS(rootFolder=vim.Folder("group-d1"), viewManager=NS(CreateContainerView=create_view),
                 propertyCollector=collector, stub=stub)
    return service, log


def names(log):
    return [entry[0] for entry in log]


@pytest.mark.parametrize("hosts", [1, 40])
def test_find_host_reads_every_name_in_one_request(hosts):
    service, log = content(hosts=["esx%d" % i for i in range(hosts)])
    host = _vsphere.find_host(service, "esx0")
    assert host._moId == "host-0"  # pylint: disable=protected-access
    assert names(log) == ["CreateContainerView", "RetrieveContents", "Destroy"]


def test_find_host_without_a_name_needs_exactly_one_host():
    service, _log = content(hosts=["only"])
    assert _vsphere.find_host(service)._moId == "host-0"  # pylint: disable=protected-access
    service, _log = content(hosts=["b", "a"])
    with pytest.raises(VsphereError, match=r"^esxi_hostname is required: this endpoint manages 2 hosts \(a, b\)$"):
        _vsphere.find_host(service)
    with pytest.raises(VsphereError, match=r"^no ESXi host named 'c' \(hosts: a, b\)$"):
        _vsphere.find_host(service, "c")


def test_find_vm_by_uuid_refuses_clones_that_share_it():
    service, log = content(vms=["web", "web-clone"])
    vms = [vim.VirtualMachine("vm-0", service.stub), vim.VirtualMachine("vm-1", service.stub)]
    found = {"4201": vms[:1], "4202": vms}
    asked = []

    def find_all(datacenter, uuid, vm_search, instance_uuid):
        asked.append((datacenter, uuid, vm_search, instance_uuid))
        return found.get(uuid, [])
    service.searchIndex = NS(FindAllByUuid=find_all)
    assert _vsphere.find_vm(service, uuid="4201")._moId == "vm-0"  # pylint: disable=protected-access
    assert asked == [(None, "4201", True, False)]
    del log[:]
    with pytest.raises(VsphereError, match=r"^2 virtual machines have the BIOS uuid 4202 \(web, web-clone\); "):
        _vsphere.find_vm(service, uuid="4202")
    assert names(log) == ["RetrieveContents"]  # both names in one request
    with pytest.raises(VsphereError, match="no virtual machine with uuid 4203"):
        _vsphere.find_vm(service, uuid="4203")

    def fault(*_):
        raise vim.fault.NoPermission(msg="no System.View")
    service.searchIndex = NS(FindAllByUuid=fault)
    with pytest.raises(VsphereError, match="looking up the VM with uuid 4201 failed: vim.fault.NoPermission"):
        _vsphere.find_vm(service, uuid="4201")


def test_find_vm_by_name_refuses_duplicates():
    service, _log = content(vms=["web", "db", "web"])
    assert _vsphere.find_vm(service, "db")._moId == "vm-1"  # pylint: disable=protected-access
    with pytest.raises(VsphereError, match="2 virtual machines are named 'web'"):
        _vsphere.find_vm(service, "web")
    with pytest.raises(VsphereError, match="no virtual machine named 'x'"):
        _vsphere.find_vm(service, "x")


def test_retrieve_reads_several_objects_at_once_and_reports_missing_properties():
    service, log = content(extra={"pts-1": {"pciPassthruInfo": []}, "gm-1": {"fail": True}})
    host = vim.HostSystem("host-0", service.stub)
    found = _vsphere.retrieve(service, [(host, ["name", "parent"]), (vim.host.PciPassthruSystem("pts-1"), ["pciPassthruInfo"])])
    assert found == {"host-0": {"name": "esx1"}, "pts-1": {"pciPassthruInfo": []}}  # unset: absent
    assert names(log) == ["RetrieveContents"]
    with pytest.raises(VsphereError, match="cannot read graphicsConfig of gm-1: vim.fault.NoPermission: no read privilege"):
        _vsphere.retrieve(service, [(vim.host.GraphicsManager("gm-1"), ["graphicsConfig"])])


def host_content():
    return content(hosts=["esx1"], extra={
        "host-0": {"configManager.pciPassthruSystem": vim.host.PciPassthruSystem("pts-1"),
                   "configManager.graphicsManager": vim.host.GraphicsManager("gm-1"),
                   "hardware.pciDevice": [], "runtime.connectionState": "connected", "runtime.bootTime": 7},
        "pts-1": {"pciPassthruInfo": ["info"]},
        "gm-1": {"graphicsConfig": "config"},
    })


def test_host_api_reads_in_bulk_and_batches_the_update():
    service, log = host_content()
    api = _vsphere.HostApi({"esxi_hostname": "esx1"}, connector=lambda params: service)
    del log[:]
    first = api.read()
    assert first["pciPassthruInfo"] == ["info"] and first["graphicsConfig"] == "config" and first["name"] == "esx1"
    assert log == [("RetrieveContents", ["host-0"], None), ("RetrieveContents", ["pts-1", "gm-1"], None)]
    del log[:]
    assert api.read() == first
    assert log == [("RetrieveContents", ["host-0", "pts-1", "gm-1"], None)]  # references known: one request

    # the managers as read, bound to the session's stub
    api._passthru = vim.host.PciPassthruSystem("pts-1", service.stub)  # pylint: disable=protected-access
    del log[:]
    api.update_passthru([("0000:3b:00.0", True, False, None), ("0000:af:00.0", True, False, "t4")])
    [(method, mo_id, (configs,))] = log
    assert (method, mo_id) == ("UpdatePassthruConfig", "pts-1")
    assert [(c.id, c.passthruEnabled, c.applyNow, c.hardwareLabel) for c in configs] == [
        ("0000:3b:00.0", True, False, None), ("0000:af:00.0", True, False, "t4")]


def test_host_api_without_a_passthrough_system_is_an_error():
    service, _log = content(hosts=["esx1"])
    api = _vsphere.HostApi({"esxi_hostname": "esx1"}, connector=lambda params: service)
    with pytest.raises(VsphereError, match="host esx1 has no PCI passthrough system"):
        api.read()


def test_boot_state_logs_in_again_when_the_session_died_with_the_host(monkeypatch):
    old, _log = host_content()
    new, _log = host_content()
    logins = []
    unregistered = []
    monkeypatch.setattr(_vsphere.atexit, "unregister", unregistered.append)

    def connector(params):
        logins.append(params)
        if len(logins) == 2:
            raise VsphereError("Unable to connect to the vCenter or ESXi API: Connection refused")
        return old if len(logins) == 1 else new

    api = _vsphere.HostApi({"esxi_hostname": None}, connector=connector)
    assert api.boot_state() == ("connected", 7)

    def gone(_specs):
        raise ConnectionRefusedError(111, "Connection refused")
    old.propertyCollector.RetrieveContents = gone
    assert api.boot_state() is None  # the host is down, the login fails too
    assert api.boot_state() is None  # the host answers again: logged in anew
    assert len(logins) == 3 and api.content is new and unregistered == [_vsphere.Disconnect] * 2
    assert api.boot_state() == ("connected", 7)


class Task:
    """A task whose wait raises ``exc`` (pyVim's WaitForTask is replaced by its wait)."""

    def __init__(self, exc=None):
        self.exc = exc
        self.info = NS(result="done")


@pytest.fixture
def tasks(monkeypatch):
    def wait_for(task):
        if task.exc is not None:
            raise task.exc
    monkeypatch.setattr(_vsphere, "WaitForTask", wait_for)


def api_with_host(host):
    service, _log = host_content()
    api = _vsphere.HostApi({"esxi_hostname": "esx1"}, connector=lambda params: service)
    api.host = host
    return api


@pytest.mark.parametrize("exc", [
    ConnectionResetError(104, "Connection reset by peer"),
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    http.client.BadStatusLine(""),
    EOFError(),
    pytest.importorskip("requests").exceptions.ConnectionError("Max retries exceeded"),
])
def test_a_reboot_whose_connection_breaks_after_the_task_was_submitted_goes_on(tasks, exc):  # pylint: disable=redefined-outer-name,unused-argument
    """On a direct ESXi login the host can go down before WaitForTask sees the task succeed."""
    api = api_with_host(NS(RebootHost_Task=lambda force: Task(exc)))
    assert api.reboot() is False
    assert api_with_host(NS(RebootHost_Task=lambda force: Task())).reboot() is True


def test_a_reboot_that_fails_or_cannot_be_submitted_is_an_error(tasks):  # pylint: disable=redefined-outer-name,unused-argument
    api = api_with_host(NS(RebootHost_Task=lambda force: Task(vim.fault.InvalidState(msg="not in maintenance mode"))))
    with pytest.raises(VsphereError, match="^RebootHost_Task failed: vim.fault.InvalidState: not in maintenance mode$"):
        api.reboot()

    def refused(force):
        raise ConnectionRefusedError(111, "Connection refused")
    with pytest.raises(_vsphere.ConnectionLost, match="^RebootHost_Task failed: the connection to vSphere broke: "
                                                      "ConnectionRefusedError"):
        api_with_host(NS(RebootHost_Task=refused)).reboot()


def test_task_submission_faults_and_lost_connections_are_errors(tasks):  # pylint: disable=redefined-outer-name,unused-argument
    def busy(timeout):
        raise vim.fault.InvalidState(msg="a task is running")
    api = api_with_host(NS(EnterMaintenanceMode_Task=busy,
                           ExitMaintenanceMode_Task=lambda timeout: Task(ConnectionResetError(104, "reset"))))
    with pytest.raises(VsphereError, match="^entering maintenance mode failed: vim.fault.InvalidState: a task is running$"):
        api.enter_maintenance(60)
    with pytest.raises(_vsphere.ConnectionLost, match="^exiting maintenance mode failed: the connection to vSphere broke"):
        api.exit_maintenance(60)


class Faulting:
    """A managed object whose every property read is a request that faults."""

    def __getattr__(self, name):
        raise vim.fault.NoPermission(msg="no read privilege for %s" % name)


def test_a_fault_from_a_plain_property_read_is_an_error_not_a_traceback():
    api = api_with_host(Faulting())
    with pytest.raises(VsphereError, match="^RebootHost_Task failed: vim.fault.NoPermission: no read privilege"):
        api.reboot()
    api.content.propertyCollector.objects["domain-c1"] = {"environmentBrowser": Faulting()}
    with pytest.raises(VsphereError, match="^reading the vGPU profiles failed: vim.fault.NoPermission"):
        api.vgpu_profiles(vim.ClusterComputeResource("domain-c1"))
    service, _log = host_content()
    service.viewManager = Faulting()
    with pytest.raises(VsphereError, match="^looking up the ESXi host failed: vim.fault.NoPermission"):
        _vsphere.find_host(service, "esx1")
    service.searchIndex = Faulting()
    with pytest.raises(VsphereError, match="^looking up the virtual machine failed: vim.fault.NoPermission"):
        _vsphere.find_vm(service, uuid="4201")
    with pytest.raises(TypeError):  # other errors are bugs: not hidden
        _vsphere.call("adding", lambda: 1 + "1")


@pytest.mark.parametrize("message, hinted", [
    ("Unable to connect to the vCenter or ESXi API at vc on TCP/443: [SSL: CERTIFICATE_VERIFY_FAILED] certificate "
     "verify failed: self-signed certificate (_ssl.c:1006)", True),
    ("Unable to log on to the vCenter or ESXi API at vc:443 as u: Login failure", False),
])
def test_connect_says_what_to_do_about_an_untrusted_certificate(monkeypatch, message, hinted):
    def refuse(**params):
        raise _vsphere.ApiAccessError(message)
    monkeypatch.setattr(_vsphere, "PyvmomiClient", refuse)
    with pytest.raises(VsphereError) as err:
        _vsphere.connect({"hostname": "vc"})
    assert str(err.value) == message + (_vsphere.CERTIFICATE_HINT if hinted else "")
    assert ("SSL_CERT_FILE" in str(err.value)) is hinted
