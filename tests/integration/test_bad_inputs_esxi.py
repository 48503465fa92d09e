# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad inputs for the ESXi modules against vcsim-gpu (tests/vcsim): each one fails with a message that
names the problem, and nothing changes.

One simulator for the file, on 127.0.0.2 (pyVmomi never checks a certificate for 127.0.0.1 without
a context, tests/vcsim/README.md), set up with plain pyVmomi: A100 and T4 passthrough-active on DC0_H0,
DC0_H0_VM0 running with the A100, DC0_H0_VM1 powered off, a powered-off VM with more memory than its
host. Every case then runs in ONE ansible-playbook (-vvv, as users run it; one process per case would
take minutes), each case preceded by a marker request the simulator logs under the case's name, so
the request log says exactly what each case sent. Checked per case: the message; no mutating request
(no task, no UpdatePassthruConfig, UpdateGraphicsConfig, ShutdownGuest...); how far it got (argument
refusals never connect, an untrusted certificate stops before the login). Checked for the file:
hosts and VMs read back with pyVmomi equal what they were before, and no password in the output.
"""

import collections
import json
import re
import socket

import pytest
from pyVim.connect import Disconnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from helpers import run_playbook
from vcsim import Vcsim, find  # tests/vcsim, on sys.path through conftest.py

A100, T4, FLEX, VGA = "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0", "0000:02:00.0"
HOST, HOLDER, TARGET, BIG, RUNNING = "DC0_H0", "DC0_H0_VM0", "DC0_H0_VM1", "big-vm", "DC0_C0_RP0_VM0"
WRONG_PASSWORD = "not-the-password-4711"
PT = vim.vm.device.VirtualPCIPassthrough
# Requests that change a host or a VM; every *_Task is a change too.
MUTATING = {"UpdatePassthruConfig", "UpdateGraphicsConfig", "ShutdownGuest", "RebootGuest", "StandbyGuest",
            "RefreshPciPassthruSystem"}
MARKER = "BadInputCase_"

# connects: "no" (refused before any connection), "unreached" (the connection failed: an untrusted
# certificate, nothing listening; no request reached the API either), "login" (logged in, read, refused).
Case = collections.namedtuple("Case", "id module args messages connects check_mode warns")


def case(case_id, module, args, messages, connects="login", check_mode=False, warns=None):
    return Case(case_id, module, args, messages, connects, check_mode, warns)


CASES = [
    # --- esxi_passthrough ------------------------------------------------------------------------
    case("host: device not passthrough-capable", "esxi_passthrough", {"esxi_hostname": HOST, "devices": [A100, VGA]},
         ["cannot enable passthrough on host DC0_H0 for 0000:02:00.0 (102b:0536 Integrated Matrox",
          "the host reports it not passthrough-capable", "nothing was changed"]),
    case("host: device not passthrough-capable, check mode", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": ["Matrox"]}, ["for 0000:02:00.0", "not passthrough-capable"],
         check_mode=True),
    case("host: unknown PCI address", "esxi_passthrough", {"esxi_hostname": HOST, "devices": [A100, "0000:99:00.0"]},
         ["no PCI device on host DC0_H0 matches '0000:99:00.0' (passthrough-capable devices there: 0000:3b:00.0"]),
    case("host: malformed PCI address", "esxi_passthrough", {"esxi_hostname": HOST, "devices": ["0000:3b:00.9", "3b-00"]},
         ["no PCI device on host DC0_H0 matches '0000:3b:00.9', '3b-00'"]),
    case("host: vendor:device id that matches nothing", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": ["dead:beef"]}, ["no PCI device on host DC0_H0 matches 'dead:beef'"]),
    case("host: empty device name", "esxi_passthrough", {"esxi_hostname": HOST, "devices": [""]},
         ["no PCI device on host DC0_H0 matches ''"]),
    case("host: name that is part of several devices' names", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": ["Controller"]},
         ["'Controller' is part of the names of different devices", "name them by PCI id"]),
    case("host: missing host", "esxi_passthrough", {"esxi_hostname": "no-such-host", "devices": [A100]},
         ["no ESXi host named 'no-such-host' (hosts: DC0_C0_H0, DC0_C0_H1, DC0_C0_H2, DC0_H0)"]),
    case("host: no esxi_hostname on a vCenter", "esxi_passthrough", {"devices": [A100]},
         ["esxi_hostname is required: this endpoint manages 4 hosts (DC0_C0_H0, DC0_C0_H1, DC0_C0_H2, DC0_H0)"]),
    case("host: hardware_label without devices", "esxi_passthrough",
         {"esxi_hostname": HOST, "graphics_type": "shared", "hardware_label": "t4"},
         ["missing parameter(s) required by 'hardware_label': devices"], connects="no"),
    case("host: nothing asked", "esxi_passthrough", {"esxi_hostname": HOST},
         ["one of the following is required: devices, graphics_type, assignment_policy"], connects="no"),
    case("host: unknown graphics type", "esxi_passthrough", {"esxi_hostname": HOST, "graphics_type": "vgpu"},
         ["value of graphics_type must be one of: shared, sharedDirect, got: vgpu"], connects="no"),
    case("host: reboot_timeout of 0", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": [FLEX], "reboot": True, "reboot_timeout": 0},
         ["reboot_timeout must be at least 1 second, got 0; nothing was changed"], connects="no"),
    case("host: wrong password", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": [FLEX], "password": WRONG_PASSWORD},
         ["Unable to log on to the vCenter or ESXi API at 127.0.0.2", "as vcsim-user", "Login failure"]),
    case("host: untrusted certificate", "esxi_passthrough",
         {"esxi_hostname": HOST, "devices": [FLEX], "validate_certs": True},
         ["Unable to connect to the vCenter or ESXi API at 127.0.0.2", "CERTIFICATE_VERIFY_FAILED",
          "self-signed certificate", "SSL_CERT_FILE", "validate_certs: false"], connects="unreached"),
    case("host: nothing listening on the port", "esxi_passthrough", {"esxi_hostname": HOST, "devices": [FLEX],
                                                                     "port": "{{ closed_port }}"},
         ["while connecting to the vCenter or ESXi API at 127.0.0.2:", "Connection refused"], connects="unreached"),
    # --- esxi_passthrough_info -------------------------------------------------------------------
    case("info: device that matches nothing", "esxi_passthrough_info", {"esxi_hostname": HOST, "devices": ["10de:ffff"]},
         ["no PCI device on host DC0_H0 matches '10de:ffff'"]),
    case("info: missing host", "esxi_passthrough_info", {"esxi_hostname": "esx99"},
         ["no ESXi host named 'esx99' (hosts: DC0_C0_H0, "]),
    case("info: no esxi_hostname on a vCenter", "esxi_passthrough_info", {},
         ["esxi_hostname is required: this endpoint manages 4 hosts"]),
    case("info: untrusted certificate", "esxi_passthrough_info", {"esxi_hostname": HOST, "validate_certs": True},
         ["CERTIFICATE_VERIFY_FAILED", "certificate"], connects="unreached"),
    # --- esxi_vm_passthrough ---------------------------------------------------------------------
    case("vm: missing VM", "esxi_vm_passthrough", {"vm_name": "no-such-vm", "devices": [{"id": A100}]},
         ["no virtual machine named 'no-such-vm'"]),
    case("vm: unknown uuid", "esxi_vm_passthrough",
         {"vm_uuid": "00000000-0000-0000-0000-000000000000", "devices": [{"id": A100}]},
         ["no virtual machine with uuid 00000000-0000-0000-0000-000000000000"]),
    case("vm: malformed PCI address", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": [{"id": "3b:00"}]},
         ["devices[0]: id '3b:00' is not a PCI id such as 0000:3b:00.0"], connects="no"),
    case("vm: malformed vendor id", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"vendor_id": "10dex", "device_id": "1eb8"}]},
         ["devices[0]: vendor_id '10dex' is not a 16-bit hex id such as 10de"], connects="no"),
    case("vm: static id and Dynamic ids in one entry", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": A100, "vendor_id": "10de", "device_id": "20f1"}]},
         ["parameters are mutually exclusive: id|vendor_id"], connects="no"),
    case("vm: label on a static device", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": [{"id": A100, "label": "x"}]},
         ["devices[0]: label is for Dynamic DirectPath (vendor_id/device_id), not for id"], connects="no"),
    case("vm: empty devices list", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": []},
         ["nothing asked: devices is empty and vgpu_profile is not given"], connects="no"),
    case("vm: the same device twice", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": [{"id": A100}, {"id": "3b:00.0"}]},
         ["devices[1]: 0000:3b:00.0 is listed twice; a device can be passed to a VM once"], connects="no"),
    case("vm: vm_name and vm_uuid", "esxi_vm_passthrough",
         {"vm_name": TARGET, "vm_uuid": "00000000-0000-0000-0000-000000000000", "devices": [{"id": A100}]},
         ["parameters are mutually exclusive: vm_name|vm_uuid"], connects="no"),
    case("vm: vGPU profile plus passthrough", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": A100}], "vgpu_profile": "grid_a100-4c"},
         ["refusing, nothing was changed", "devices and vgpu_profile together: a VM cannot have both a DirectPath I/O "
          "device (static or Dynamic) and an NVIDIA vGPU"]),
    case("vm: powered-on VM", "esxi_vm_passthrough",
         {"vm_name": RUNNING, "devices": [{"vendor_id": "10de", "device_id": "1eb8"}]},
         ["refusing, nothing was changed: VM DC0_C0_RP0_VM0 is powered on: PCI passthrough and vGPU devices are only "
          "added or removed while it is powered off", "vm_powerstate"]),
    case("vm: removal from a powered-on VM", "esxi_vm_passthrough",
         {"vm_name": HOLDER, "devices": [{"id": A100}], "state": "absent"},
         ["VM DC0_H0_VM0 is powered on: PCI passthrough and vGPU devices are only added or removed"]),
    case("vm: device not passthrough-capable", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": [{"id": VGA}]},
         ["refusing, nothing was changed: PCI device 0000:02:00.0 on host DC0_H0 is not passthrough-capable"]),
    case("vm: unknown PCI address", "esxi_vm_passthrough", {"vm_name": TARGET, "devices": [{"id": "0000:99:00.0"}]},
         ["host DC0_H0 has no PCI device 0000:99:00.0 (its passthrough-capable devices: 0000:3b:00.0, "]),
    case("vm: device whose passthrough is not enabled", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": FLEX}]},
         ["passthrough of 0000:d8:00.0 is not enabled on host DC0_H0", "passthrough.gpu.esxi_passthrough"]),
    case("vm: vGPU profile the host does not offer", "esxi_vm_passthrough",
         {"vm_name": TARGET, "vgpu_profile": "grid_a100-4c"},
         ["host DC0_H0 does not offer vGPU profile grid_a100-4c (it offers none: set its GPUs' graphics type to "
          "sharedDirect"]),
    case("vm: memory reservation impossible", "esxi_vm_passthrough", {"vm_name": BIG, "devices": [{"id": T4}]},
         ["refusing, nothing was changed: VM big-vm has 8192 MiB of memory, more than host DC0_H0 has (4095 MiB)",
          "could never power on there"]),
    case("vm: device already given to a running VM (check mode)", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": A100}]}, [], check_mode=True,
         warns="0000:3b:00.0 is also given to VM DC0_H0_VM0 (poweredOn) on host DC0_H0; only one VM at a time can "
               "run with it: VM DC0_H0_VM1 will not power on while DC0_H0_VM0 runs"),
    case("vm: wrong password", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": A100}], "password": WRONG_PASSWORD},
         ["Unable to log on to the vCenter or ESXi API at 127.0.0.2", "Login failure"]),
    case("vm: untrusted certificate", "esxi_vm_passthrough",
         {"vm_name": TARGET, "devices": [{"id": A100}], "validate_certs": True},
         ["CERTIFICATE_VERIFY_FAILED", "certificate"], connects="unreached"),
    # --- vm_mmio ---------------------------------------------------------------------------------
    case("mmio: powered-on VM without power_cycle", "vm_mmio", {"vm_name": RUNNING, "gpu_count": 1},
         ["refusing, nothing was changed: VM DC0_C0_RP0_VM0 is powered on", "power_cycle=true"]),
    case("mmio: BAR size not a power of two", "vm_mmio", {"vm_name": TARGET, "bar_sizes": ["64G", "48G"]},
         ["bar_sizes: '48G' is not a power of two"], connects="no"),
    case("mmio: BAR size that is not a size", "vm_mmio", {"vm_name": TARGET, "bar_sizes": ["16 potatoes"]},
         ["bar_sizes: '16 potatoes' is not a size"], connects="no"),
    case("mmio: window too small for the BARs", "vm_mmio",
         {"vm_name": TARGET, "rule": "count", "gpu_count": 1, "bar_sizes": ["64G", "32M"]},
         ["refusing, nothing was changed: 64bitMMIOSizeGB 32 (rule count) cannot hold the given BARs (64.031 GiB in all)",
          "use rule bars (128 GB) or a size_gb of at least 65"], connects="no"),
    case("mmio: fixed size too small for the BARs", "vm_mmio",
         {"vm_name": TARGET, "rule": "fixed", "size_gb": 16, "bar_sizes": ["32G"]},
         ["64bitMMIOSizeGB 16 (rule fixed) cannot hold the given BARs (32 GiB in all)"], connects="no"),
    case("mmio: size_gb with another rule", "vm_mmio", {"vm_name": TARGET, "rule": "count", "gpu_count": 1, "size_gb": 64},
         ["size_gb is only used by rule fixed (the rule here is count)"], connects="no"),
    case("mmio: size_gb of 0", "vm_mmio", {"vm_name": TARGET, "size_gb": 0}, ["size_gb must be at least 1, got 0"],
         connects="no"),
    case("mmio: gpu_count of 0", "vm_mmio", {"vm_name": TARGET, "gpu_count": 0},
         ["gpu_count must be a whole number of at least 1, got 0"], connects="no"),
    case("mmio: unknown uuid", "vm_mmio", {"vm_uuid": "00000000-0000-0000-0000-000000000001", "gpu_count": 1},
         ["no virtual machine with uuid 00000000-0000-0000-0000-000000000001"]),
    case("mmio: rule bars without BAR sizes", "vm_mmio", {"vm_name": TARGET, "rule": "bars", "gpu_count": 2},
         ["rule bars needs bar_sizes"], connects="no"),
    case("mmio: unknown firmware", "vm_mmio", {"vm_name": TARGET, "gpu_count": 1, "firmware": "bios"},
         ["value of firmware must be one of: efi, keep, got: bios"], connects="no"),
    case("mmio: shutdown_timeout of 0 with power_cycle", "vm_mmio",
         {"vm_name": RUNNING, "gpu_count": 1, "power_cycle": True, "shutdown_timeout": 0},
         ["shutdown_timeout must be at least 1 second, got 0; nothing was changed"], connects="no"),
    case("mmio: missing VM", "vm_mmio", {"vm_name": "no-such-vm", "gpu_count": 1},
         ["no virtual machine named 'no-such-vm'"]),
    case("mmio: untrusted certificate", "vm_mmio", {"vm_name": TARGET, "gpu_count": 1, "validate_certs": True},
         ["CERTIFICATE_VERIFY_FAILED", "certificate"], connects="unreached"),
]
IDS = [c.id for c in CASES]


def _all(si, kind):
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return sorted(view.view, key=lambda obj: obj.name)
    finally:
        view.Destroy()


def fingerprint(si):
    """Everything a bad input could have changed, per host and per VM, read with plain pyVmomi."""
    hosts = dict((h.name, {
        "passthrough": sorted((i.id, i.passthruEnabled, i.passthruActive, getattr(i, "hardwareLabel", None))
                              for i in h.configManager.pciPassthruSystem.pciPassthruInfo),
        "graphics": repr(h.configManager.graphicsManager.graphicsConfig),
        "boot": h.runtime.bootTime, "maintenance": h.runtime.inMaintenanceMode,
        "reboot_required": h.summary.rebootRequired}) for h in _all(si, vim.HostSystem))
    vms = dict((vm.name, {
        "power": vm.runtime.powerState, "host": vm.runtime.host.name, "firmware": vm.config.firmware,
        "locked": vm.config.memoryReservationLockedToMax, "memory": vm.config.hardware.memoryMB,
        "version": vm.config.version, "extra": [(o.key, o.value) for o in vm.config.extraConfig],
        "devices": [(d.key, type(d).__name__, repr(d.backing) if isinstance(d, PT) else None)
                    for d in vm.config.hardware.device]}) for vm in _all(si, vim.VirtualMachine))
    return {"hosts": hosts, "vms": vms}


def set_up(si):
    """A100 and T4 active on DC0_H0; DC0_H0_VM0 runs with the A100; DC0_H0_VM1 powered off; big-vm
    (8 GiB, on a 4 GiB host) powered off. All with plain pyVmomi, as an admin would have left them."""
    host = find(si, vim.HostSystem, HOST)
    host.configManager.pciPassthruSystem.UpdatePassthruConfig([
        vim.host.PciPassthruConfig(id=pci_id, passthruEnabled=True, applyNow=True) for pci_id in (A100, T4)])
    holder, target = find(si, vim.VirtualMachine, HOLDER), find(si, vim.VirtualMachine, TARGET)
    for vm in (holder, target):
        WaitForTask(vm.PowerOffVM_Task())
    backing = PT.DeviceBackingInfo(id=A100, deviceId="20f1", vendorId=0x10DE, deviceName="A100",
                                   systemId=host.hardware.systemInfo.uuid)
    WaitForTask(holder.ReconfigVM_Task(vim.vm.ConfigSpec(memoryReservationLockedToMax=True, deviceChange=[
        vim.vm.device.VirtualDeviceSpec(operation="add", device=PT(key=-100, backing=backing))])))
    WaitForTask(holder.PowerOnVM_Task())
    spec = vim.vm.ConfigSpec(name=BIG, version="vmx-19", guestId="otherGuest", memoryMB=8192, numCPUs=1,
                             files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"))
    WaitForTask(find(si, vim.Datacenter, "DC0").vmFolder.CreateVM_Task(config=spec, pool=host.parent.resourcePool,
                                                                       host=host))
    assert host.hardware.memorySize // (1 << 20) == 4095  # the message of the memory case names it


# A lookup next to the playbook (ansible loads a playbook's lookup_plugins/ by itself): a marker
# costs one HTTP request from the controller, not a module run.
MARKER_LOOKUP = '''
import http.client
import ssl

from ansible.plugins.lookup import LookupBase

BODY = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv='
        '"http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><%s/></soapenv:Body></soapenv:Envelope>')


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        host, port, name = terms
        connection = http.client.HTTPSConnection(host, int(port), timeout=30,
                                                 context=ssl._create_unverified_context())
        try:
            connection.request("POST", "/sdk", body=BODY % name, headers={"Content-Type": "text/xml"})
            connection.getresponse().read()  # a fault: the simulator knows no such method, and logged it
        finally:
            connection.close()
        return [name]
'''


def playbook(sim):
    """All cases in one play: a marker request (logged by the simulator as BadInputCase_<n>), then the case."""
    tasks = []
    for index, item in enumerate(CASES + [None]):
        tasks.append({"name": "marker %d" % index, "ansible.builtin.set_fact": {
            "bad_input_marker": "{{ lookup('vcsim_marker', '%s', %d, '%s%d') }}" % (sim.host, sim.port, MARKER, index)}})
        if item is not None:
            task = {"name": item.id, "passthrough.gpu." + item.module: item.args, "register": "case_%d" % index,
                    "ignore_errors": True}
            if item.check_mode:
                task["check_mode"] = True
            tasks.append(task)
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks, "vars": {"closed_port": closed_port(sim.ip)}}]


def closed_port(ip):
    """A port of ``ip`` that nothing listens on (it was free a moment ago; nothing here takes ports)."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


def run_cases(workdir):
    """Run every case once on a fresh simulator; returns (results by id, requests by id, output,
    state before, state after). ``workdir``: a pathlib.Path for the playbook and its results."""
    with Vcsim(ip="127.0.0.2") as sim:
        si = sim.connect()
        try:
            set_up(si)
            before = fingerprint(si)
            results_file = workdir / "results.json"
            play = playbook(sim)
            play[0]["tasks"].append({"name": "keep the results", "ansible.builtin.copy": {
                "dest": str(results_file), "mode": "0600", "content": "{{ %s | to_json }}" % (
                    "{" + ", ".join("'%d': case_%d" % (i, i) for i in range(len(CASES))) + "}")}})
            (workdir / "play.yml").write_text(json.dumps(play))  # JSON is YAML
            (workdir / "lookup_plugins").mkdir()
            (workdir / "lookup_plugins" / "vcsim_marker.py").write_text(MARKER_LOOKUP)
            log_start = len(sim.requests())
            proc = run_playbook(str(workdir / "play.yml"), extra_args=["-vvv"], timeout=600, env=sim.env())
            output = proc.stdout + proc.stderr
            assert proc.returncode == 0 and results_file.exists(), output[-6000:]
            results = json.loads(results_file.read_text())
            after = fingerprint(si)
            by_case, current = collections.defaultdict(list), None
            for name in sim.requests()[log_start:]:
                if name.startswith(MARKER):
                    current = int(name[len(MARKER):])
                else:
                    by_case[current].append(name)
            return ({c.id: results[str(i)] for i, c in enumerate(CASES)},
                    {c.id: by_case[i] for i, c in enumerate(CASES)}, output, before, after)
        finally:
            Disconnect(si)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """All cases, run once for the file."""
    return run_cases(tmp_path_factory.mktemp("bad-inputs-esxi"))


def test_there_are_enough_cases_for_every_module():
    modules = collections.Counter(c.module for c in CASES)
    assert len(CASES) >= 12 and len(set(IDS)) == len(IDS)
    assert set(modules) == {"esxi_passthrough", "esxi_passthrough_info", "esxi_vm_passthrough", "vm_mmio"}


@pytest.mark.parametrize("item", CASES, ids=IDS)
def test_case(matrix, item):  # pylint: disable=redefined-outer-name
    results, requests = matrix[0], matrix[1]
    result, sent = results[item.id], requests[item.id]
    if item.warns:
        assert not result.get("failed"), result.get("msg")
        assert item.warns in " ".join(" ".join(result.get("warnings", [])).split()), result.get("warnings")
    else:
        assert result.get("failed") is True, result
        assert result.get("changed") is False, result
        for message in item.messages:
            assert message in result["msg"], result["msg"]
        # a message, not a trace: the module failed through fail_json (with -vvv ansible-core 2.19 adds
        # "exception": "(traceback unavailable)" to a fail_json that had no exception to show)
        assert "Traceback" not in result["msg"] and "module_stderr" not in result
        assert result.get("exception", "(traceback unavailable)") == "(traceback unavailable)", result["exception"]
    changes = [name for name in sent if name in MUTATING or name.endswith("_Task")]
    assert changes == [], changes
    if item.connects in ("no", "unreached"):
        assert sent == [], sent  # refused before a request reached the API (TLS stops before one is sent)
    else:
        assert "Login" in sent, sent


def test_nothing_changed_on_any_host_or_vm(matrix):  # pylint: disable=redefined-outer-name
    before, after = matrix[3], matrix[4]
    assert before["hosts"] == after["hosts"]
    assert before["vms"] == after["vms"]
    # the set-up is what the cases assume
    assert after["vms"][HOLDER]["power"] == "poweredOn" and after["vms"][TARGET]["power"] == "poweredOff"
    assert [(i[0], i[2]) for i in after["hosts"][HOST]["passthrough"] if i[2]] == [(A100, True), (T4, True)]


def test_no_password_in_the_output(matrix):  # pylint: disable=redefined-outer-name
    results, output = matrix[0], matrix[2]
    assert WRONG_PASSWORD not in output and "vcsim-pass" not in output
    assert WRONG_PASSWORD not in json.dumps(results) and "vcsim-pass" not in json.dumps(results)
    assert re.search(r"Traceback \(most recent call last\)", output) is None
