# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _libvirt
from ansible_collections.passthrough.gpu.plugins.module_utils._libvirt import DomainPlan, LibvirtError

# What `virsh dumpxml --inactive` gives for a small Debian 12 domain, with things the module must keep.
DOMAIN = """<domain type='kvm'>
  <name>guest</name>
  <uuid>0f3a3c43-5b4c-4a7f-9a3c-2c1a3f0b7e11</uuid>
  <description>keep me &amp; my text</description>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>4</vcpu>
  <cputune>
    <vcpupin vcpu='3' cpuset='7'/>
    <shares>2048</shares>
  </cputune>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='custom' match='exact' check='partial'>
    <model fallback='allow'>Skylake-Client</model>
    <topology sockets='1' dies='1' cores='2' threads='2'/>
  </cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source>
        <address domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
      </source>
    </hostdev>
    <hostdev mode='subsystem' type='usb' managed='yes'>
      <source><vendor id='0x046d'/><product id='0xc52b'/></source>
    </hostdev>
  </devices>
</domain>
"""

FULL = dict(hostdevs=["0000:01:00.0", "0000:01:00.1"], hugepages=True, hugepage_size="1G",
            vcpu_pins={"0": "2", "1": "3", "2": "4-5,^5"}, emulator_cpuset="0-1", cpu_mode="host-passthrough",
            hyperv_vendor_id="0123456789ab", kvm_hidden=True, firmware="efi", mmio64_mb=65536)


def plan(**kwargs):
    return DomainPlan(**kwargs).validate()


def apply(xml, **kwargs):
    return _libvirt.plan_domain(xml, plan(**kwargs))


def test_full_plan_then_nothing_left():
    before, after, changes = apply(DOMAIN, **FULL)
    assert changes == [
        "hostdev 0000:01:00.0 added", "hostdev 0000:01:00.1 added", "hugepages added", "hugepage size 1G",
        "vcpupin vcpu=3 removed", "vcpupin vcpu=0 cpuset=2", "vcpupin vcpu=1 cpuset=3", "vcpupin vcpu=2 cpuset=4-5,^5",
        "emulatorpin cpuset=0-1", "cpu mode=host-passthrough", "hyperv vendor_id=0123456789ab",
        "kvm hidden state=on", "os firmware=efi", "qemu -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536"]
    dom = ET.fromstring(after)
    addresses = [(h.get("managed"), h.find("source/address").attrib) for h in dom.findall("devices/hostdev")
                 if h.get("type") == "pci"]
    assert addresses[1:] == [("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x0"}),
                             ("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x1"})]
    assert dom.find("memoryBacking/hugepages/page").attrib == {"size": "1048576", "unit": "KiB"}
    assert [(p.get("vcpu"), p.get("cpuset")) for p in dom.findall("cputune/vcpupin")] == \
        [("0", "2"), ("1", "3"), ("2", "4-5,^5")]
    assert dom.find("cputune/shares").text == "2048"  # not managed: kept
    assert dom.find("cputune/emulatorpin").get("cpuset") == "0-1"
    cpu = dom.find("cpu")
    assert cpu.get("mode") == "host-passthrough" and cpu.find("model") is None and "match" not in cpu.attrib
    assert cpu.find("topology").get("threads") == "2"
    assert dom.find("features/hyperv/vendor_id").attrib == {"state": "on", "value": "0123456789ab"}
    assert dom.find("features/kvm/hidden").get("state") == "on"
    assert dom.find("features/acpi") is not None
    assert dom.find("os").get("firmware") == "efi"
    assert [a.get("value") for a in dom.findall("{%s}commandline/{%s}arg" % (_libvirt.QEMU_NS, _libvirt.QEMU_NS))] \
        == ["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=65536"]
    assert 'xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0"' in after and "<qemu:arg " in after
    assert dom.find("description").text == "keep me & my text"
    assert dom.find("devices/hostdev[@type='usb']/source/vendor").get("id") == "0x046d"
    # the before text is the original, serialized the same way: only what changed differs
    assert ET.tostring(ET.fromstring(before)) == ET.tostring(ET.fromstring(_libvirt.serialize(ET.fromstring(DOMAIN))))
    assert apply(after, **FULL)[2] == []


def test_libvirt_canonical_forms_are_no_change():
    """What libvirt writes back after a define (ranges, KiB, its own attributes) is not a change."""
    xml = DOMAIN.replace("<vcpupin vcpu='3' cpuset='7'/>",
                         "<vcpupin vcpu='0' cpuset='2-3'/><emulatorpin cpuset='0-1'/>").replace(
        "<features>", "<memoryBacking><hugepages><page size='1' unit='G'/></hugepages></memoryBacking><features>")
    assert apply(xml, vcpu_pins={0: "2,3"}, emulator_cpuset="0,1", hugepages=True, hugepage_size="1G")[2] == []


def test_existing_unmanaged_hostdev_is_made_managed_and_absent_removes():
    changes = apply(DOMAIN, hostdevs=["0000:02:00.0"])[2]
    assert changes == ["hostdev 0000:02:00.0 managed=yes"]
    _b, after, changes = apply(DOMAIN, hostdevs=["0000:02:00.0", "0000:03:00.0"], hostdev_state="absent")
    assert changes == ["hostdev 0000:02:00.0 removed"]
    assert ET.fromstring(after).findall("devices/hostdev")[0].get("type") == "usb"


def test_removals_clean_up_empty_parents():
    _b, with_all, _c = apply(DOMAIN, hugepages=True, hyperv_vendor_id="abc", kvm_hidden=True,
                             firmware="efi", mmio64_mb=1024)
    _b, after, changes = apply(with_all, hugepages=False, hyperv_vendor_id="", kvm_hidden=False, mmio64_mb=0)
    assert changes == ["hugepages removed", "hyperv vendor_id removed", "kvm hidden removed",
                       "qemu -fw_cfg opt/ovmf/X-PciMmio64Mb removed"]
    dom = ET.fromstring(after)
    gone = ("memoryBacking", "features/hyperv", "features/kvm", _libvirt.QEMU_COMMANDLINE)
    assert [dom.find(t) for t in gone] == [None] * 4
    assert dom.find("features/acpi") is not None
    assert apply(DOMAIN, hugepages=False, kvm_hidden=False, hyperv_vendor_id="", mmio64_mb=0)[2] == []


def test_mmio_keeps_other_qemu_arguments_and_replaces_its_own():
    xml = DOMAIN.replace("<domain type='kvm'>", "<domain type='kvm' xmlns:qemu='%s'>" % _libvirt.QEMU_NS).replace(
        "</devices>", "</devices><qemu:commandline><qemu:arg value='-S'/><qemu:arg value='-fw_cfg'/>"
        "<qemu:arg value='name=opt/ovmf/X-PciMmio64Mb,string=1024'/></qemu:commandline>")
    _b, after, changes = apply(xml, firmware="efi", mmio64_mb=2048)
    assert changes[-1] == "qemu -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=2048"
    args = [a.get("value") for a in ET.fromstring(after).iter(_libvirt.QEMU_ARG)]
    assert args == ["-S", "-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=2048"]
    _b, after, changes = apply(after, mmio64_mb=0)
    assert [a.get("value") for a in ET.fromstring(after).iter(_libvirt.QEMU_ARG)] == ["-S"]


def test_untouched_options_change_nothing_and_keep_the_text():
    before, after, changes = apply(DOMAIN)
    assert changes == [] and before == after


def test_ovmf_loader_counts_as_efi_and_other_loaders_are_refused():
    ovmf = DOMAIN.replace("<boot dev='hd'/>", "<loader readonly='yes' type='pflash'>"
                          "/usr/share/OVMF/OVMF_CODE_4M.fd</loader><boot dev='hd'/>")
    assert apply(ovmf, firmware="efi", mmio64_mb=2048)[2] == [
        "qemu -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=2048"]
    other = DOMAIN.replace("<boot dev='hd'/>", "<loader type='rom'>/usr/share/seabios/bios.bin</loader>")
    with pytest.raises(LibvirtError, match="sets its own <loader>"):
        apply(other, firmware="efi")


@pytest.mark.parametrize("kwargs, message", [
    (dict(mmio64_mb=4096), "mmio64_mb is read by OVMF only"),
    (dict(vcpu_pins={"4": "1"}), r"names vCPU 4 but the domain has 4 vCPU\(s\) \(0-3\)"),
    (dict(firmware="efi", hugepages=True, __xml=DOMAIN.replace("<acpi/>", "")), "firmware=efi needs ACPI"),
])
def test_refusals_on_the_domain(kwargs, message):
    xml = kwargs.pop("__xml", DOMAIN)
    with pytest.raises(LibvirtError, match=message):
        apply(xml, **kwargs)


@pytest.mark.parametrize("xml, message", [
    ("<domain", "does not parse"),
    ("<network/>", "not a libvirt domain XML"),
    ("<domain type='xen'><name>x</name></domain>", "only QEMU/KVM domains"),
])
def test_refusals_on_the_xml(xml, message):
    with pytest.raises(LibvirtError, match=message):
        apply(xml, hugepages=True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(hugepage_size="1G"), "hugepage_size needs hugepages=true"),
    (dict(hyperv_vendor_id="0123456789abc"), "at most 12 printable"),
    (dict(hyperv_vendor_id="a b"), "at most 12 printable"),
    (dict(vcpu_pins={"x": "1"}), "keys are vCPU numbers"),
    (dict(vcpu_pins={"0": "1-"}), "malformed cpuset"),
    (dict(emulator_cpuset="3-1"), "range 3-1 goes down"),
    (dict(emulator_cpuset="1,^1"), "names no CPU"),
    (dict(mmio64_mb=-1), "mmio64_mb must be 0"),
])
def test_refusals_on_options(kwargs, message):
    with pytest.raises(LibvirtError, match=message):
        plan(**kwargs)


def test_cpusets():
    assert _libvirt.parse_cpuset("0-3,^2,6") == {0, 1, 3, 6}
    assert _libvirt.format_cpuset({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


def test_hostdev_addresses_from_the_host(tree):
    tree.device("0000:01:00.0")
    tree.device("0000:01:00.1", klass="040300")
    tree.device("0000:02:00.0", klass="020000")
    root = tree.root
    assert _libvirt.normalize_hostdevs(root, ["01:00.0"], True, True) == ["0000:01:00.0", "0000:01:00.1"]
    assert _libvirt.normalize_hostdevs(root, ["0000:01:00.1", "01:00.1"], False, True) == ["0000:01:00.1"]
    with pytest.raises(LibvirtError, match="0000:05:00.0 is not a PCI device on this host"):
        _libvirt.normalize_hostdevs(root, ["0000:05:00.0"], False, True)
    assert _libvirt.normalize_hostdevs(root, ["0000:05:00.0"], False, False) == ["0000:05:00.0"]
    with pytest.raises(LibvirtError, match="01:00"):
        _libvirt.normalize_hostdevs(root, ["01:00"], False, True)
    with pytest.raises(LibvirtError, match="all_functions: cannot list PCI devices"):
        _libvirt.normalize_hostdevs(root + "/nowhere", ["01:00.0"], True, False)
    tree.write("sys/devices/system/cpu/online", "0-3\n")
    assert _libvirt.read_online_cpus(root) == {0, 1, 2, 3}


class FakeVirsh(object):
    """A libvirt with one domain, answering virsh argv like the real one."""

    def __init__(self, xml=DOMAIN, state="shut off", keep=True):
        self.xml, self.live, self.state, self.keep, self.calls = xml, xml, state, keep, []

    def __call__(self, argv):
        self.calls.append(argv)
        args = argv[3:]
        if args[-1] not in ("guest",) and args[0] != "define":
            return 1, "", "error: failed to get domain '%s'" % args[-1]
        if args[0] == "domstate":
            return 0, self.state + "\n\n", ""
        if args[0] == "dumpxml":
            return 0, self.xml if "--inactive" in args else self.live, ""
        if args[0] == "define":
            with open(args[-1]) as handle:
                if self.keep:
                    self.xml = handle.read()
            return 0, "Domain 'guest' defined from %s\n" % args[-1], ""
        return 1, "", "unexpected %r" % argv


def fake_virsh_host(tree, monkeypatch):
    """The lab GPU and its audio function, four online CPUs, and virsh answered by a FakeVirsh
    (returned) for every AnsibleModule in the test: how the module tests run libvirt_passthrough."""
    from ansible.module_utils import basic  # pylint: disable=import-outside-toplevel

    tree.device("0000:01:00.0")
    tree.device("0000:01:00.1", klass="040300")
    tree.write("sys/devices/system/cpu/online", "0-3\n")
    fake = FakeVirsh()
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/usr/bin/" + name)
    monkeypatch.setattr(basic.AnsibleModule, "run_command",
                        lambda self, argv, environ_update=None: fake([os.path.basename(argv[0])] + argv[1:]))
    return fake


def test_ensure_domain_check_apply_and_restart_required(tmp_path):
    fake = FakeVirsh(state="running")
    result = _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "guest", plan(**FULL), True)
    assert result["changed"] and fake.xml == DOMAIN and result["restart_required"] is True
    assert result["commands"] == [["virsh", "-c", "qemu:///system", "define", "--validate", "<new definition>"]]
    result = _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "guest", plan(**FULL), False,
                                    tmpdir=str(tmp_path))
    assert result["changed"] and result["restart_required"] and result["active"]
    assert result["commands"][0][3:5] == ["define", "--validate"] and list(tmp_path.iterdir()) == []
    result = _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "guest", plan(**FULL), False)
    assert not result["changed"] and result["restart_required"] and result["commands"] == []
    fake.live = fake.xml
    result = _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "guest", plan(**FULL), True)
    assert not result["changed"] and not result["restart_required"]


def test_ensure_domain_refusals():
    fake = FakeVirsh()
    with pytest.raises(LibvirtError, match="no domain 'other' on qemu:///system"):
        _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "other", plan(hugepages=True), False)
    with pytest.raises(LibvirtError, match="host CPU.s. 9, not online on this host .online: 0-3."):
        _libvirt.ensure_domain(_libvirt.Virsh(fake, "qemu:///system"), "guest", plan(vcpu_pins={0: "2,9"}), False,
                               online_cpus={0, 1, 2, 3})
    assert fake.calls == [["virsh", "-c", "qemu:///system", "domstate", "other"]]
    forgetful = FakeVirsh(keep=False)
    with pytest.raises(LibvirtError, match="did not keep: hugepages added") as failed:
        _libvirt.ensure_domain(_libvirt.Virsh(forgetful, "qemu:///system"), "guest", plan(hugepages=True), False)
    assert failed.value.changed is True
