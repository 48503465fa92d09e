# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The readiness rules of the report, on facts read by the collection's own code from sysfs trees."""

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _gpu
from sysfs_tree import MEM32, MEM64_PREF, bar_line

from ansible.errors import AnsibleFilterError
from ansible_collections.passthrough.gpu.plugins.filter.readiness import FilterModule, pci_names, readiness

GIB = 1 << 30


def linux_record(tree, name="h1", kind="kvm"):
    iommu, gpus = _gpu.read_gpus(tree.root)
    return {"name": name, "kind": kind, "iommu": iommu, "gpus": gpus}


def only_host(records, **kwargs):
    report = readiness(records, **kwargs)
    assert len(report["hosts"]) == 1
    return report["hosts"][0]


def gpu_row(host, address):
    return dict((g["address"], g) for g in host["gpus"])[address]


def vfio_gpu(tree, group=1, address="0000:01:00.0", bar1=16 * GIB, driver="vfio-pci"):
    tree.iommu_unit("dmar0")
    tree.device(address, driver=driver, group=group, boot_vga=False,
                resources={0: bar_line(0xDE000000, 16 << 20, MEM32), 1: bar_line(0x4000000000, bar1, MEM64_PREF)})
    tree.device(address[:-1] + "1", device="1aef", klass="040300", driver=driver, group=group)


def test_ready_gpu_on_vfio(tree):
    vfio_gpu(tree)
    host = only_host([linux_record(tree)])
    gpu = gpu_row(host, "0000:01:00.0")
    assert (gpu["status"], gpu["ready"], gpu["ready_text"], gpu["reason"]) == ("ready", True, "yes", "nothing missing")
    assert gpu["isolated"] is True and gpu["isolation"] == "yes (group 1)"
    assert gpu["driver"] == "vfio-pci, vfio-pci on 0000:01:00.1"
    assert gpu["bars"] == ["BAR0 16 MiB mem", "BAR1 16 GiB mem, 64-bit, prefetchable"]
    assert gpu["mmio_gb"] == 32 and gpu["mmio"].startswith("32 GB (bars rule")
    assert (host["status"], host["ready_text"], host["iommu"], host["iommu_on"]) == ("ready", "yes", "on (intel)", True)
    assert host["reason"] == "1 of 1 GPUs ready: 0000:01:00.0"


def test_bind_pending_names_every_function(tree):
    tree.workstation()
    gpu = gpu_row(only_host([linux_record(tree)]), "0000:01:00.0")
    assert gpu["status"] == "pending" and gpu["ready"] is True and gpu["ready_text"] == "pending"
    assert gpu["blockers"] == []
    assert gpu["reason"] == "bind pending: not on vfio-pci yet (0000:01:00.0: nvidia; 0000:01:00.1: snd_hda_intel)"


def test_one_function_off_vfio_is_still_pending(tree):
    vfio_gpu(tree)
    tree.device("0000:01:00.2", device="1ad6", klass="0c0330", driver="xhci_hcd", group=1)
    gpu = gpu_row(only_host([linux_record(tree)]), "0000:01:00.0")
    assert gpu["status"] == "pending" and "0000:01:00.2: xhci_hcd" in gpu["reason"]


def test_console_gpu_is_blocked_even_when_isolated(tree):
    tree.workstation()
    host = only_host([linux_record(tree)])
    igpu = gpu_row(host, "0000:00:02.0")
    assert igpu["isolated"] is True and igpu["status"] == "blocked" and igpu["ready_text"] == "no"
    assert igpu["blockers"] == ["console GPU (boot_vga): the host needs another display adapter or a headless boot"]
    # the host is as good as its best GPU: the dGPU waits only for the bind
    assert host["status"] == "pending" and host["reason"].startswith("no GPU ready yet: 0000:01:00.0: bind pending")


def test_shared_group_says_with_whom(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:02:00.0", vendor="1b36", device="000e", klass="060400", group=9)
    tree.device("0000:03:00.0", driver="vfio-pci", group=9, parents=["0000:02:00.0"],
                resources={1: bar_line(0x6000000000, 8 * GIB, MEM64_PREF)})
    tree.device("0000:03:01.0", vendor="8086", device="100e", klass="020000", driver="e1000", group=9,
                parents=["0000:02:00.0"])
    host = only_host([linux_record(tree)])
    gpu = gpu_row(host, "0000:03:00.0")
    assert gpu["isolated"] is False and gpu["status"] == "blocked"
    # the bridge stays with the host and is not named; the NIC is
    assert gpu["isolation"] == "no: group 9 shared with 0000:03:01.0 [8086:100e]"
    assert gpu["blockers"] == ["IOMMU group 9 is shared with 0000:03:01.0 [8086:100e]"]
    assert host["status"] == "blocked" and host["reason"] == (
        "no GPU can be passed through: 0000:03:00.0: IOMMU group 9 is shared with 0000:03:01.0 [8086:100e]")


def test_iommu_off_blocks_the_host_and_every_gpu(tree):
    tree.device("0000:01:00.0", driver="nvidia", boot_vga=False,
                resources={1: bar_line(0x4000000000, 16 * GIB, MEM64_PREF)})
    host = only_host([linux_record(tree)])
    gpu = gpu_row(host, "0000:01:00.0")
    assert host["iommu"] == "off" and host["iommu_on"] is False
    assert host["status"] == "blocked" and host["reason"].startswith("IOMMU is off")
    assert gpu["blockers"] == ["IOMMU off"] and gpu["isolated"] is None and gpu["isolation"] == "n/a (IOMMU off)"


def test_unassigned_bar_blocks(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:01:00.0", driver="vfio-pci", group=1, resources={
        1: (0, 16 * GIB - 1, MEM64_PREF | 0x20000000)})
    gpu = gpu_row(only_host([linux_record(tree)]), "0000:01:00.0")
    assert gpu["status"] == "blocked"
    assert gpu["blockers"] == ["BAR not assigned on 0000:01:00.0: enable Above 4G decoding in firmware"]
    assert "NOT ASSIGNED" in gpu["bars"][0]


@pytest.mark.parametrize("limit, status", [(None, "ready"), (64, "ready"), (32, "ready"), (16, "blocked")])
def test_mmio_limit(tree, limit, status):
    vfio_gpu(tree, bar1=16 * GIB)  # 16 GiB + 16 MiB 64-bit BARs -> 32 GB by the bar rule
    gpu = gpu_row(only_host([linux_record(tree)], max_mmio_gb=limit), "0000:01:00.0")
    assert gpu["status"] == status
    if status == "blocked":
        assert gpu["blockers"] == ["needs 32 GB of 64-bit MMIO, above the 16 GB limit"]


def test_large_bars_note_the_ovmf_fw_cfg(tree):
    vfio_gpu(tree, bar1=32 * GIB)
    gpu = gpu_row(only_host([linux_record(tree)]), "0000:01:00.0")
    assert gpu["status"] == "ready" and gpu["mmio_gb"] == 64
    assert gpu["notes"] == ["OVMF guests need -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536"]


def test_acs_override_is_a_note_not_a_blocker(tree):
    vfio_gpu(tree)
    tree.cmdline("ro intel_iommu=on pcie_acs_override=downstream,multifunction")
    host = only_host([linux_record(tree)])
    assert host["status"] == "ready" and host["notes"] == ["pcie_acs_override is on the kernel command line"]
    assert gpu_row(host, "0000:01:00.0")["notes"] == ["isolation relies on pcie_acs_override (weaker than real ACS)"]


def test_no_gpu(tree):
    tree.iommu_unit("dmar0")
    tree.device("0000:00:1f.0", vendor="8086", device="a305", klass="060100", group=3)
    host = only_host([linux_record(tree)])
    assert host["gpus"] == [] and host["status"] == "blocked" and host["reason"] == "no GPU found"


@pytest.mark.parametrize("record, reason", [
    ({"name": "h", "kind": "proxmox"}, "no facts: host unreachable or not read"),
    ({"name": "h", "kind": "kvm", "error": "root /x does not exist"}, "no facts: root /x does not exist"),
    ({"name": "h", "kind": "esxi", "error": "Cannot complete login"}, "no facts: Cannot complete login"),
])
def test_unread_host(record, reason):
    host = only_host([record])
    assert host["status"] == "blocked" and host["reason"] == reason and host["gpus"] == []


def esxi_device(pci_id, name, capable=True, enabled=False, active=False, graphics_type="basic"):
    return {"id": pci_id, "name": name, "vendor_name": "NVIDIA Corporation", "vendor_id": "10de",
            "device_id": "1eb8", "capable": capable, "enabled": enabled, "active": active,
            "hardware_label": None, "graphics_type": graphics_type}


def esxi_record(devices, **extra):
    return dict({"name": "esx1", "kind": "esxi",
                 "esxi": {"host": "esx1", "devices": devices, "host_reboot_required": False}}, **extra)


def test_esxi_states():
    host = only_host([esxi_record([
        esxi_device("0000:3b:00.0", "A100", enabled=True, active=True, graphics_type="direct"),
        esxi_device("0000:af:00.0", "T4", enabled=True, active=False),
        esxi_device("0000:d8:00.0", "Flex 170", graphics_type="sharedDirect"),
        esxi_device("0000:02:00.0", "Matrox G200", capable=False),
        esxi_device("0000:03:00.0", "PVSCSI", graphics_type=None),  # not a GPU: no graphics info
    ])])
    rows = dict((g["address"], g) for g in host["gpus"])
    assert sorted(rows) == ["0000:02:00.0", "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"]
    assert rows["0000:3b:00.0"]["status"] == "ready" and rows["0000:3b:00.0"]["name"] == "NVIDIA Corporation A100"
    assert rows["0000:af:00.0"]["reason"] == "reboot pending: passthrough is enabled, active after a host reboot"
    assert rows["0000:d8:00.0"]["reason"].startswith("enable pending: DirectPath I/O is off")
    assert rows["0000:d8:00.0"]["notes"] == ["runs in sharedDirect graphics mode now (vGPU / shared)"]
    assert rows["0000:02:00.0"]["status"] == "blocked" and "not passthrough-capable" in rows["0000:02:00.0"]["reason"]
    assert rows["0000:3b:00.0"]["mmio"] == "32 GB by the count rule (vSphere does not report BAR sizes)"
    assert host["status"] == "ready" and host["iommu_on"] is None


def test_esxi_devices_chosen_by_name_all_count():
    host = only_host([esxi_record([esxi_device("0000:af:00.0", "T4", graphics_type=None)], all_devices_are_gpus=True)])
    assert [g["address"] for g in host["gpus"]] == ["0000:af:00.0"] and host["status"] == "pending"


def test_summary_order_and_duplicates(tree):
    vfio_gpu(tree)
    ready = linux_record(tree, name="b")
    report = readiness([ready, {"name": "a", "kind": "kvm", "error": "boom"},
                        dict(ready, kind="proxmox"), esxi_record([])])
    # inventory order is kept; a host in two groups is reported once, with its first record
    assert [(h["name"], h["kind"]) for h in report["hosts"]] == [("b", "kvm"), ("a", "kvm"), ("esx1", "esxi")]
    assert report["summary"] == {"hosts": 3, "hosts_ready": 1, "hosts_pending": 0,
                                 "gpus": 1, "gpus_ready": 1, "gpus_pending": 0}
    assert report["hosts"][2]["reason"] == "no GPU found"


def test_pci_names(tmp_path):
    ids = tmp_path / "pci.ids"
    ids.write_text("# comment\n10de  NVIDIA Corporation\n\t2204  GA102 [GeForce RTX 3090]\n"
                   "\t\t1458 403b  sub-system\n\t1eb8  TU104GL [Tesla T4]\n8086  Intel Corporation\n"
                   "\t2204  not this one\nC 03  Display controller\n\t00  VGA compatible controller\n")
    assert pci_names(str(ids), {"10de:2204", "1234:1111"}) == {"10de:2204": "NVIDIA Corporation GA102 [GeForce RTX 3090]"}
    assert pci_names(str(tmp_path / "missing"), {"10de:2204"}) == {}


def test_names_fall_back_to_the_class(tree, tmp_path):
    vfio_gpu(tree)
    gpu = gpu_row(only_host([linux_record(tree)], pci_ids=str(tmp_path / "none")), "0000:01:00.0")
    assert gpu["name"] == "VGA controller" and gpu["ids"] == "10de:2204"


@pytest.mark.parametrize("records, kwargs, message", [
    ({"name": "h"}, {}, "expects a list"),
    ([{"kind": "kvm"}], {}, "needs a name"),
    ([{"name": "h", "kind": "hyperv"}], {}, "kind must be one of esxi, kvm, proxmox"),
    ([], {"max_mmio_gb": "lots"}, "max_mmio_gb must be a whole number"),
])
def test_bad_input(records, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        readiness(records, **kwargs)


def test_registered_name():
    assert FilterModule().filters() == {"readiness": readiness}
