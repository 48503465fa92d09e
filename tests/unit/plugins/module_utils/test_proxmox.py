# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _proxmox

# As PVE writes a config: description as '#' lines (percent-encoded), sorted keys, a blank line,
# then [PENDING] and one section per snapshot.
CONF = """#Gaming VM%3A RTX passthrough
#  second line, two spaces kept
agent: 1
boot: order=scsi0;net0
cores: 8
cpu: host
efidisk0: local-lvm:vm-100-disk-0,efitype=4m,pre-enrolled-keys=1,size=4M
memory: 16384
meta: creation-qemu=8.1.2,ctime=1700000000
name: gaming
net0: virtio=BC:24:11:00:00:01,bridge=vmbr0
ostype: win11
parent: before-gpu
scsi0: local-lvm:vm-100-disk-1,iothread=1,size=128G
scsihw: virtio-scsi-single
smbios1: uuid=6f1c2a0e-0000-4000-8000-000000000100
sockets: 1
vmgenid: 0a0b0c0d-0000-4000-8000-000000000100

[PENDING]
cores: 12

[before-gpu]
boot: order=scsi0;net0
cores: 8
hostpci0: 0000:02:00,pcie=1
machine: pc-i440fx-8.1
memory: 16384
snaptime: 1700000100
"""

GPU = {"host": "0000:01:00", "pcie": True, "x_vga": True}
ALL = {"machine": "q35", "bios": "ovmf", "hugepages": "1024", "numa": True, "mmio_mb": 65536}
NONE = dict.fromkeys(ALL)


@pytest.mark.parametrize("text", [
    CONF, CONF.replace("\n", "\r\n"), CONF.rstrip("\n"), "", "cores: 2", "#only a description\n",
    "weird line kept\nname: x\n\n\n[snap]\nname: y\n",
])
def test_round_trip_keeps_every_byte(text):
    assert _proxmox.VmConfig(text).render() == text
    new, changes, _warnings = _proxmox.plan(text, [], NONE)
    assert new == text and changes == []


def _main(text):
    return text.split("\n[")[0]


def test_plan_edits_only_the_main_section():
    new, changes, warnings = _proxmox.plan(CONF, [GPU], ALL)
    head, tail = new.split("\n\n[PENDING]", 1)
    assert tail == CONF.split("\n\n[PENDING]", 1)[1]  # sections byte for byte
    assert head.startswith("#Gaming VM%3A RTX passthrough\n#  second line, two spaces kept\nagent: 1\n")
    for line in ("hostpci0: 0000:01:00,pcie=1,x-vga=1", "machine: q35", "bios: ovmf", "hugepages: 1024",
                 "numa: 1", "args: -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536"):
        assert line in head.split("\n")
    # new keys right after the last key, before the blank line that ends the current config
    assert head.endswith("vmgenid: 0a0b0c0d-0000-4000-8000-000000000100\nhostpci0: 0000:01:00,pcie=1,x-vga=1\n"
                         "machine: q35\nbios: ovmf\nhugepages: 1024\nnuma: 1\n"
                         "args: -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536")
    assert [c["key"] for c in changes] == ["hostpci0", "machine", "bios", "hugepages", "numa", "args"]
    assert all(c["before"] is None for c in changes)
    assert any("[PENDING]" in w for w in warnings)
    # second plan: nothing to do
    again, changes2, _w = _proxmox.plan(new, [GPU], ALL)
    assert again == new and changes2 == []


def test_crlf_file_stays_crlf():
    text = "name: x\r\ncores: 2\r\n"
    new, _changes, _w = _proxmox.plan(text, [GPU], {"machine": "q35"})
    assert new == "name: x\r\ncores: 2\r\nhostpci0: 0000:01:00,pcie=1,x-vga=1\r\nmachine: q35\r\n"


def test_no_final_newline():
    new, _c, _w = _proxmox.plan("name: x", [], {"numa": True})
    assert new == "name: x\nnuma: 1\n"


@pytest.mark.parametrize("existing, device, expected", [
    # same device, options as wanted but spelled differently: untouched
    ("hostpci0: 01:00,pcie=on,x-vga=yes", GPU, "hostpci0: 01:00,pcie=on,x-vga=yes"),
    ("hostpci0: host=0000:01:00,pcie=1,x-vga=1", GPU, "hostpci0: host=0000:01:00,pcie=1,x-vga=1"),
    # options not managed here stay, in place
    ("hostpci0: 0000:01:00,romfile=gpu.rom,pcie=1", GPU, "hostpci0: 0000:01:00,romfile=gpu.rom,pcie=1,x-vga=1"),
    # one function -> whole slot: same entry, new id
    ("hostpci3: 0000:01:00.0,pcie=1", GPU, "hostpci3: 0000:01:00,pcie=1,x-vga=1"),
    # x_vga false removes it; rombar false is written as 0
    ("hostpci0: 0000:01:00.0,x-vga=1,pcie=1", {"host": "01:00.0", "pcie": True, "x_vga": False, "rombar": False},
     "hostpci0: 0000:01:00.0,pcie=1,rombar=0"),
    # a different device goes to the next free index
    ("hostpci0: 0000:02:00.0", {"host": "01:00.0", "pcie": False}, "hostpci0: 0000:02:00.0\nhostpci1: 0000:01:00.0"),
    # mapping
    ("hostpci0: mapping=gpu-a,pcie=1", {"mapping": "gpu-a", "pcie": True}, "hostpci0: mapping=gpu-a,pcie=1"),
    ("", {"mapping": "gpu-a", "pcie": False}, "hostpci0: mapping=gpu-a"),
    # explicit index moves the entry
    ("hostpci0: 0000:01:00.0", {"host": "01:00.0", "index": 2}, "hostpci2: 0000:01:00.0"),
])
def test_hostpci_entries(existing, device, expected):
    text = "machine: q35\n" + (existing + "\n" if existing else "")
    new, _c, _w = _proxmox.plan(text, [device], NONE)
    assert new == "machine: q35\n" + expected + "\n"


def test_exclusive_removes_others():
    text = "machine: q35\nhostpci0: 0000:02:00.0\nhostpci1: 0000:01:00,pcie=1,x-vga=1\nhostpci4: 03:00.0\n"
    new, changes, _w = _proxmox.plan(text, [GPU], NONE, exclusive=True)
    assert new == "machine: q35\nhostpci1: 0000:01:00,pcie=1,x-vga=1\n"
    assert [(c["key"], c["after"]) for c in changes] == [("hostpci0", None), ("hostpci4", None)]


@pytest.mark.parametrize("args, mmio, expected", [
    (None, 65536, "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536"),
    ("-cpu host,kvm=off", 65536, "-cpu host,kvm=off -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536"),
    ("-a 1 -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=32768 -b 2", 65536,
     "-a 1 -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536 -b 2"),
    ("-fw_cfg opt/ovmf/X-PciMmio64Mb,string=1024", 2048, "-fw_cfg opt/ovmf/X-PciMmio64Mb,string=2048"),
])
def test_merge_mmio_args(args, mmio, expected):
    assert _proxmox.merge_mmio_args(args, mmio) == expected


@pytest.mark.parametrize("value, q35", [
    ("q35", True), ("pc-q35-8.1", True), ("pc-q35-8.1+pve0", True), ("type=q35,viommu=intel", True),
    ("q35,viommu=virtio", True), ("pc-i440fx-8.1", False), ("pc", False), (None, False),
])
def test_machine_is_q35(value, q35):
    assert _proxmox.machine_is_q35(value) is q35


def test_q35_pinned_version_is_kept():
    text = "machine: pc-q35-8.1\n"
    new, changes, _w = _proxmox.plan(text, [], {"machine": "q35"})
    assert new == text and changes == []


@pytest.mark.parametrize("text, devices, options, message", [
    ("", [GPU], NONE, "needs machine: q35"),
    ("machine: pc-i440fx-8.1\n", [GPU], NONE, "has pc-i440fx-8.1"),
    ("numa: 0\nnuma: 0\n", [], {"numa": True}, "'numa' appears 2 times"),
    ("machine: q35\nhostpci0: 01:00.0\nhostpci1: 01:00.1\n", [GPU], NONE, "not choosing"),
    ("machine: q35\nhostpci2: 05:00.0\n", [dict(GPU, index=2)], NONE, "hostpci2 already holds"),
    ("", [{"host": "01:00"}, {"host": "01:00.1"}], NONE, "requested twice"),
    ("", [{"host": "1:0.0"}], NONE, "is not a PCI id"),
    ("", [{"host": "01:00.0", "mapping": "x"}], NONE, "exactly one of host or mapping"),
    ("", [{"host": "01:00.0", "index": 16}], NONE, "out of range"),
    ("", [], {"mmio_mb": 0}, "positive"),
])
def test_refusals(text, devices, options, message):
    with pytest.raises(_proxmox.ProxmoxError, match=message.replace("(", r"\(")):
        _proxmox.plan(text, devices, dict(NONE, **options))


def test_an_asked_index_is_not_given_to_an_earlier_device():
    """A device without an index must not take a slot a later device asks for by index."""
    new, _c, _w = _proxmox.plan("machine: q35\n", [{"host": "0000:01:00"}, {"host": "0000:02:00", "index": 0}],
                                NONE)
    assert new == "machine: q35\nhostpci1: 0000:01:00\nhostpci0: 0000:02:00\n"


def test_an_asked_index_held_by_another_wanted_device_is_refused():
    """01:00 keeps its hostpci0, which 02:00 asks for by index: a refusal, not a silent overwrite."""
    with pytest.raises(_proxmox.ProxmoxError, match="hostpci0 is asked for by both"):
        _proxmox.plan("machine: q35\nhostpci0: 0000:01:00\n", [{"host": "0000:01:00"}, {"host": "0000:02:00", "index": 0}],
                      NONE)


def test_no_free_slot():
    text = "".join("hostpci%d: 0000:%02x:00.0\n" % (i, i + 0x10) for i in range(16))
    with pytest.raises(_proxmox.ProxmoxError, match="no free hostpci slot"):
        _proxmox.plan("machine: q35\n" + text, [GPU], NONE)


@pytest.mark.parametrize("text, options, warning", [
    ("", {"bios": "ovmf"}, "no efidisk0"),
    ("memory: 3000\n", {"hugepages": "1024"}, "memory 3000 MiB is not a multiple"),
])
def test_warnings(text, options, warning):
    _new, _c, warnings = _proxmox.plan(text, [], dict(NONE, **options))
    assert any(warning in w for w in warnings)


@pytest.mark.parametrize("files, live, running", [
    ({}, True, False),
    ({"run/qemu-server/100.pid": "4242\n"}, True, False),  # no such process
    ({"run/qemu-server/100.pid": "4242\n", "proc/4242/cmdline": "/usr/bin/kvm\0-id\0100\0-pidfile\0/var/run/qemu-server/100.pid\0"}, True, True),
    ({"run/qemu-server/100.pid": "4242\n", "proc/4242/cmdline": "/usr/sbin/sshd\0"}, True, False),  # reused pid
    ({"run/qemu-server/100.pid": "4242\n"}, False, None),  # another root without /proc: cannot tell
])
def test_vm_running(tree, files, live, running):
    for rel, text in files.items():
        tree.write(rel, text)
    if "proc/4242/cmdline" not in files and live:
        tree.write("proc/1/cmdline", "init")
    assert _proxmox.vm_running(tree.root, 100, live)[0] is running


def test_a_key_written_twice_is_refused_even_when_not_edited():
    """PVE keeps the last hostpci0; the plan would not see 01:00 in the first and add it again."""
    text = "machine: q35\nhostpci0: 0000:01:00\nhostpci0: 0000:02:00\n"
    with pytest.raises(_proxmox.ProxmoxError, match="key 'hostpci0' appears 2 times"):
        _proxmox.plan(text, [{"host": "0000:01:00"}], NONE)


def test_an_unquoted_yaml_slot_is_explained():
    with pytest.raises(_proxmox.ProxmoxError, match=r"YAML reads an unquoted 10:00 as the number 600"):
        _proxmox.normalize_pci_id(600)


@pytest.mark.parametrize("machine", ["q35", "pc-q35-8.1", "pc-q35-8.1+pve0", "pc-i440fx-9.0.pxe", "pc", "virt",
                                     "type=q35,viommu=intel", "q35,viommu=virtio,enable-s3=1"])
def test_machine_types_pve_takes(machine):
    assert _proxmox.validate_machine(machine) == machine


@pytest.mark.parametrize("machine", ["q35\nlock: backup", "banana", "q35 ", "q35,viommu", "pc-q35-", "q35;x"])
def test_a_machine_pve_would_not_take_is_refused_before_it_reaches_the_file(machine):
    with pytest.raises(_proxmox.ProxmoxError, match="is not a Proxmox VE machine type"):
        _proxmox.plan("memory: 512\n", [], dict(NONE, machine=machine))
