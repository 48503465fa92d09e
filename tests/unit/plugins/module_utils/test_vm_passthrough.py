# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from types import SimpleNamespace

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _vm_passthrough as vp

A100, T4, INTEL = "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"
SYSTEM_ID = "4c4c4544-0000-1111-2222-333344445555"


def facts(**override):
    """The facts of a powered-off vmx-19 VM on a host where the A100 and Intel Flex are active, in a
    cluster that offers T4s for Dynamic DirectPath, one of them with the hardware label t4."""
    base = {
        "name": "vm1", "power_state": "poweredOff", "hw_version": "vmx-19", "locked": False, "host": "esx1",
        "active": {A100: {"system_id": SYSTEM_ID, "vendor_id": 4318, "device_id": 0x20F1, "name": "A100"},
                   INTEL: {"system_id": SYSTEM_ID, "vendor_id": -32634, "device_id": 0x56C0, "name": "Flex 170"}},
        "passthru": {}, "profiles": ["grid_a100-4c", "grid_a100-8c"],
        "dynamic_offered": {(0x10DE, 0x1EB8, None): (0x10DE, 0x1EB8), (0x10DE, 0x1EB8, "t4"): (0x10DE, 0x1EB8)},
    }
    base.update(override)
    return base


def static(pci_id, key=1):
    return {"key": key, "kind": "static", "id": pci_id}


def dynamic(vendor, device, label=None, key=2):
    return {"key": key, "kind": "dynamic", "allowed": [(vendor, device)], "label": label}


def vgpu(profile, key=3):
    return {"key": key, "kind": "vgpu", "vgpu_profile": profile}


def wants(*devices, **kwargs):
    return vp.parse_wants(list(devices), kwargs.get("vgpu_profile"))


T4_WANT = {"vendor_id": "10de", "device_id": "1eb8"}


# --- ids and parsing --------------------------------------------------------------------------

@pytest.mark.parametrize("text, normal", [
    ("0000:3b:00.0", A100), ("3b:00.0", A100), ("0000:3B:00.0", A100), (" 3b:00.7 ", "0000:3b:00.7"),
    ("0001:3b:00.0", "0001:3b:00.0"), ("3b:00.8", None), ("3b:0.0", None), ("10de:1eb8", None), ("", None),
])
def test_normalize_pci_id(text, normal):
    assert vp.normalize_pci_id(text) == normal


@pytest.mark.parametrize("text, value", [("10de", 0x10DE), ("0x10DE", 0x10DE), ("8086", 0x8086), ("1", 1), ("ffff", 0xFFFF)])
def test_parse_hex_id(text, value):
    assert vp.parse_hex_id(text, "vendor_id") == value


@pytest.mark.parametrize("text", ["10000", "xyz", "-1", "", "10de:1eb8"])
def test_parse_hex_id_refuses(text):
    with pytest.raises(vp.VmPassthroughError, match="16-bit hex id"):
        vp.parse_hex_id(text, "vendor_id")


def test_parse_wants():
    assert wants({"id": "3b:00.0"}, dict(T4_WANT, label="t4"), vgpu_profile="grid_t4-2q") == [
        {"kind": "static", "id": A100},
        {"kind": "dynamic", "allowed": [(0x10DE, 0x1EB8)], "label": "t4"},
        {"kind": "vgpu", "vgpu_profile": "grid_t4-2q"}]


@pytest.mark.parametrize("devices, message", [
    ([{"id": "3b:00"}], r"devices\[0\]: id '3b:00' is not a PCI id"),
    ([{"id": A100, "label": "x"}], r"devices\[0\]: label is for Dynamic DirectPath"),
    ([{"id": A100}, {"id": "3b:00.0"}], r"devices\[1\]: 0000:3b:00.0 is listed twice"),
    ([{"vendor_id": "10de"}], r"devices\[0\]: give either id"),
    ([{"label": "t4"}], r"devices\[0\]: give either id"),
    ([{"vendor_id": "10de", "device_id": "1e8b9"}], r"devices\[0\]: device_id '1e8b9' is not a 16-bit hex id"),
])
def test_parse_wants_refuses(devices, message):
    with pytest.raises(vp.VmPassthroughError, match=message):
        vp.parse_wants(devices, None)


def _device(backing, key=7):
    return SimpleNamespace(key=key, backing=backing)


@pytest.mark.parametrize("backing, described", [
    (SimpleNamespace(vgpu="grid_t4-2q"), {"kind": "vgpu", "vgpu_profile": "grid_t4-2q"}),
    (SimpleNamespace(allowedDevice=[SimpleNamespace(vendorId=-32634, deviceId=0x56C0)], customLabel="",
                     deviceName=""),
     {"kind": "dynamic", "allowed": [(0x8086, 0x56C0)], "label": None}),          # signed ids are masked
    (SimpleNamespace(id="3B:00.0", deviceId="20f1", systemId=SYSTEM_ID, vendorId=4318, deviceName="A100"),
     {"kind": "static", "id": A100, "vendor_id": "10de", "device_id": "20f1", "name": "A100"}),
    (SimpleNamespace(id=INTEL, deviceId="0x56C0", systemId=SYSTEM_ID, vendorId=-32634, deviceName=None),
     {"kind": "static", "id": INTEL, "vendor_id": "8086", "device_id": "56c0", "name": None}),
    (SimpleNamespace(deviceName="plugin"), {"kind": "other"}),
])
def test_describe(backing, described):
    assert vp.describe(_device(backing)) == dict(described, key=7)


# --- present --------------------------------------------------------------------------------

def test_static_backing_comes_from_the_hosts_config_target():
    planned = vp.plan(wants({"id": A100}, {"id": INTEL}), [], "present", facts())
    assert [a["backing"] for a in planned["add"]] == [
        {"id": A100, "deviceId": "20f1", "systemId": SYSTEM_ID, "vendorId": 4318, "deviceName": "A100"},
        # deviceId in hex, vendorId as the signed short the host reports (0x8086 is -32634)
        {"id": INTEL, "deviceId": "56c0", "systemId": SYSTEM_ID, "vendorId": -32634, "deviceName": "Flex 170"}]
    assert planned["lock"] is True and planned["remove"] == []
    assert any("vMotion" in w and "snapshots" in w and "DRS" in w for w in planned["warnings"])


FLEX = {"vendor_id": "8086", "device_id": "56c0"}


@pytest.mark.parametrize("offered, allowed", [
    ({(0x8086, 0x56C0, None): (0x8086, 0x56C0)}, [(0x8086, 0x56C0)]),    # the cluster's own values
    ({(0x8086, 0x56C0, None): (-32634, 0x56C0)}, [(-32634, 0x56C0)]),
    ({(0x8086, 0x56C0, "flex"): (-32634, 0x56C0)}, [(-32634, 0x56C0)]),  # no label asked: any label fits
    ({}, [(-32634, 0x56C0)]),                                              # not listed: the signed shorts
])
def test_dynamic_backing_ids(offered, allowed):
    planned = vp.plan(wants(FLEX), [], "present", facts(dynamic_offered=offered))
    assert planned["add"][0]["backing"] == {"allowedDevice": allowed, "customLabel": ""}
    assert any("no host of VM vm1's cluster" in w for w in planned["warnings"]) is (not offered)


# The cluster's config target: a T4 labelled "t4", one labelled "infer", one without a label.
LABELLED = {(0x10DE, 0x1EB8, "t4"): (0x10DE, 0x1EB8), (0x10DE, 0x1EB8, "infer"): (0x10DE, 0x1EB8),
            (0x10DE, 0x1EB8, None): (0x10DE, 0x1EB8), (0x8086, 0x56C0, "flex"): (0x8086, 0x56C0)}


@pytest.mark.parametrize("label, offered", [("t4", LABELLED), ("infer", LABELLED), ("flex", LABELLED),
                                            (None, {(0x8086, 0x56C0, "flex"): (0x8086, 0x56C0)})])
def test_a_label_takes_a_device_with_that_hardware_label(label, offered):
    want = dict(FLEX if label in ("flex", None) else T4_WANT, label=label)
    planned = vp.plan(wants(want), [], "present", facts(dynamic_offered=offered))
    [added] = planned["add"]
    assert added["backing"]["customLabel"] == (label or "") and added["label"] == label
    assert not any("no host of VM vm1's cluster" in w for w in planned["warnings"])


@pytest.mark.parametrize("offered, messages", [
    (LABELLED, ["offers a 10de:1eb8 device with hardware label a100", "labels offered for 10de:1eb8: infer, t4"]),
    ({(0x10DE, 0x1EB8, None): (0x10DE, 0x1EB8)}, ["its 10de:1eb8 devices have no hardware label"]),
    ({(0x8086, 0x56C0, "a100"): (0x8086, 0x56C0)}, ["none of its hosts has passthrough active for 10de:1eb8"]),
    ({}, ["none of its hosts has passthrough active for 10de:1eb8"]),
])
def test_a_label_no_device_of_the_cluster_has_is_refused(offered, messages):
    with pytest.raises(vp.VmPassthroughError) as err:
        vp.plan(wants(dict(T4_WANT, label="a100")), [], "present", facts(dynamic_offered=offered))
    assert str(err.value).startswith("refusing, nothing was changed: no host of VM vm1's cluster ")
    for message in messages + ["passthrough.gpu.esxi_passthrough sets with its hardware_label option",
                               "or leave label out"]:
        assert message in str(err.value)


def test_a_labelled_device_the_vm_has_needs_no_offer():
    planned = vp.plan(wants(dict(T4_WANT, label="t4")), [dynamic(0x10DE, 0x1EB8, "t4")], "present",
                      facts(dynamic_offered={}, locked=True))
    assert planned == {"add": [], "remove": [], "lock": False, "warnings": []}


@pytest.mark.parametrize("wanted, existing, added", [
    ([{"id": A100}], [static(A100)], []),                                         # already there
    ([{"id": "3b:00.0"}], [static(A100)], []),                                    # named without the domain
    ([{"id": A100}], [static(INTEL)], [A100]),
    ([T4_WANT], [dynamic(0x10DE, 0x1EB8)], []),
    ([T4_WANT, T4_WANT], [dynamic(0x10DE, 0x1EB8)], ["10de:1eb8"]),               # two T4s wanted, one there
    ([T4_WANT], [dynamic(0x10DE, 0x1EB8), dynamic(0x10DE, 0x1EB8, key=9)], []),   # at least as many
    ([dict(T4_WANT, label="t4")], [dynamic(0x10DE, 0x1EB8)], ["10de:1eb8"]),      # the label is part of it
    ([T4_WANT], [dynamic(0x10DE, 0x1EB8, "t4")], ["10de:1eb8"]),
    ([{"id": A100}, T4_WANT], [static(A100)], ["10de:1eb8"]),
])
def test_present_adds_only_what_is_missing(wanted, existing, added):
    planned = vp.plan(vp.parse_wants(wanted, None), existing, "present", facts())
    assert [a.get("id") or vp.public(a)["allowed"][0] for a in planned["add"]] == added


def test_vgpu_profile_already_there_and_lock_already_set_is_no_change():
    planned = vp.plan(wants(vgpu_profile="grid_a100-4c"), [vgpu("grid_a100-4c")], "present", facts(locked=True))
    assert planned == {"add": [], "remove": [], "lock": False, "warnings": []}


def test_lock_alone_is_a_change_even_on_the_devices_the_vm_has():
    planned = vp.plan(wants({"id": A100}), [static(A100)], "present", facts())
    assert planned["add"] == [] and planned["lock"] is True


def test_nothing_to_change_on_a_powered_on_vm_is_fine():
    planned = vp.plan(wants({"id": A100}), [static(A100)], "present", facts(power_state="poweredOn", locked=True))
    assert not (planned["add"] or planned["remove"] or planned["lock"])


@pytest.mark.parametrize("wanted, vgpu_profile, existing", [
    ([{"id": A100}], None, [static(A100)]),
    ([dict(T4_WANT, label="t4")], None, [dynamic(0x10DE, 0x1EB8, "t4")]),
    ([], "grid_a100-4c", [vgpu("grid_a100-4c")]),
])
def test_a_running_vm_that_has_its_devices_gets_the_lock_in_place(wanted, vgpu_profile, existing):
    # All its memory is reserved already (it runs with them); ESXi takes the lock on a running VM.
    planned = vp.plan(vp.parse_wants(wanted, vgpu_profile), existing, "present",
                      facts(power_state="poweredOn", dynamic_offered={}))
    assert planned == {"add": [], "remove": [], "lock": True, "warnings": []}


def test_a_suspended_vm_is_refused_the_lock():
    with pytest.raises(vp.VmPassthroughError, match="VM vm1 is suspended: its memory reservation is locked while"):
        vp.plan(wants({"id": A100}), [static(A100)], "present", facts(power_state="suspended"))


PASSTHRU = {A100: {"capable": True, "enabled": True, "active": True},
            T4: {"capable": True, "enabled": True, "active": False},
            INTEL: {"capable": True, "enabled": False, "active": False},
            "0000:03:00.0": {"capable": False, "enabled": False, "active": False}}


@pytest.mark.parametrize("wanted, vgpu_profile, existing, override, messages", [
    ([{"id": A100}], "grid_a100-4c", [], {},
     ["devices and vgpu_profile together", "cannot have both"]),
    ([], "grid_a100-4c", [static(A100)], {},
     ["VM vm1 already has 0000:3b:00.0 (DirectPath I/O)", "remove it first (state: absent)"]),
    ([T4_WANT], None, [vgpu("grid_a100-4c")], {},
     ["VM vm1 already has grid_a100-4c (NVIDIA vGPU)", "cannot have both"]),
    ([{"id": T4}], None, [], {"passthru": PASSTHRU},
     ["passthrough of 0000:af:00.0 is enabled on host esx1 but not active yet", "reboot the host", "apply_now: true"]),
    ([{"id": T4}], None, [], {"passthru": dict(PASSTHRU, **{T4: PASSTHRU[INTEL]})},
     ["passthrough of 0000:af:00.0 is not enabled on host esx1", "passthrough.gpu.esxi_passthrough",
      "devices: ['0000:af:00.0']"]),
    ([{"id": A100}], None, [], {"passthru": PASSTHRU, "active": {}},
     ["passthrough of 0000:3b:00.0 is active on host esx1, but the host does not offer it to VMs"]),
    ([{"id": "0000:03:00.0"}], None, [], {"passthru": PASSTHRU},
     ["0000:03:00.0 on host esx1 is not passthrough-capable"]),
    ([{"id": "0000:99:00.0"}], None, [], {"passthru": PASSTHRU},
     ["host esx1 has no PCI device 0000:99:00.0", "passthrough-capable devices: 0000:3b:00.0, 0000:af:00.0"]),
    ([{"id": T4}], None, [], {},
     ["0000:af:00.0 is not passthrough-active on host esx1", "passthrough.gpu.esxi_passthrough"]),
    ([T4_WANT], None, [], {"hw_version": "vmx-13"},
     ["vm1 has virtual hardware vmx-13", "needs vmx-17 or later"]),
    ([], "grid_t4-2q", [], {},
     ["does not offer vGPU profile grid_t4-2q (offered: grid_a100-4c, grid_a100-8c)"]),
    ([], "grid_t4-2q", [], {"profiles": []},
     ["offers none", "sharedDirect"]),
    ([], "grid_a100-8c", [vgpu("grid_a100-4c")], {},
     ["has vGPU profile grid_a100-4c", "not changed in place"]),
    ([{"id": A100}], None, [], {"power_state": "poweredOn"},
     ["VM vm1 is powered on", "only added or removed while it is powered off", "vm_powerstate"]),
    ([{"id": A100}], None, [], {"power_state": "suspended"}, ["VM vm1 is suspended"]),
])
def test_present_refusals(wanted, vgpu_profile, existing, override, messages):
    with pytest.raises(vp.VmPassthroughError) as err:
        vp.plan(vp.parse_wants(wanted, vgpu_profile), existing, "present", facts(**override))
    assert str(err.value).startswith("refusing, nothing was changed: ")
    for message in messages:
        assert message in str(err.value)


def test_every_problem_is_in_one_message():
    with pytest.raises(vp.VmPassthroughError) as err:
        vp.plan(wants({"id": T4}, T4_WANT), [], "present", facts(hw_version="vmx-13", power_state="poweredOn"))
    assert str(err.value).count("; ") >= 2
    assert "0000:af:00.0" in str(err.value) and "vmx-17" in str(err.value) and "powered on" in str(err.value)


# --- absent ---------------------------------------------------------------------------------

VM_DEVICES = [static(A100, 1), static(INTEL, 2), dynamic(0x10DE, 0x1EB8, key=3),
              dynamic(0x10DE, 0x1EB8, "t4", key=4), dynamic(0x10DE, 0x1EB8, key=5)]


@pytest.mark.parametrize("wanted, vgpu_profile, existing, removed", [
    ([{"id": A100}], None, VM_DEVICES, [1]),
    ([{"id": T4}], None, VM_DEVICES, []),
    ([T4_WANT], None, VM_DEVICES, [3, 5]),                       # every unlabelled T4, not the labelled one
    ([dict(T4_WANT, label="t4")], None, VM_DEVICES, [4]),
    ([{"id": INTEL}, T4_WANT], None, VM_DEVICES, [2, 3, 5]),
    ([], "grid_a100-4c", [vgpu("grid_a100-4c", 8), vgpu("grid_a100-8c", 9)], [8]),
    ([], "grid_a100-4c", [], []),
])
def test_absent_removes_exactly_the_matching_devices(wanted, vgpu_profile, existing, removed):
    planned = vp.plan(vp.parse_wants(wanted, vgpu_profile), existing, "absent", facts(locked=False))
    assert [d["key"] for d in planned["remove"]] == removed
    assert planned["add"] == [] and planned["lock"] is False  # absent never touches the lock


def test_absent_refuses_a_powered_on_vm_only_when_there_is_something_to_remove():
    with pytest.raises(vp.VmPassthroughError, match="powered on"):
        vp.plan(wants({"id": A100}), VM_DEVICES, "absent", facts(power_state="poweredOn"))
    assert vp.plan(wants({"id": T4}), VM_DEVICES, "absent", facts(power_state="poweredOn"))["remove"] == []


# --- outcome --------------------------------------------------------------------------------

def test_outcome_predicts_the_vm_after_the_plan():
    existing = [static(INTEL, 1), dynamic(0x10DE, 0x1EB8, "t4", key=2)]
    planned = vp.plan(wants({"id": A100}), existing, "present", facts())
    result = vp.outcome(existing, planned, False)
    assert result["changed"] is True and result["memory_reservation_locked_to_max"] is True
    assert [d["id"] or d["allowed"] for d in result["devices"]] == [INTEL, ["10de:1eb8"], A100]
    assert result["added"][0]["vendor_id"] == "10de" and result["added"][0]["device_id"] == "20f1"
    assert result["diff"] == {
        "before": {"pci_devices": ["0000:d8:00.0 (DirectPath I/O)", "10de:1eb8 label t4 (Dynamic DirectPath I/O)"],
                   "memory_reservation_locked_to_max": False},
        "after": {"pci_devices": ["0000:d8:00.0 (DirectPath I/O)", "10de:1eb8 label t4 (Dynamic DirectPath I/O)",
                                  "0000:3b:00.0 (DirectPath I/O)"],
                  "memory_reservation_locked_to_max": True}}
    unchanged = vp.outcome(existing, {"add": [], "remove": [], "lock": False, "warnings": []}, True)
    assert unchanged["changed"] is False and unchanged["diff"]["before"] == unchanged["diff"]["after"]


def test_a_clash_with_the_vm_is_reported_even_when_the_add_is_refused_for_another_reason():
    with pytest.raises(vp.VmPassthroughError) as err:
        vp.plan(wants(vgpu_profile="grid_t4-2q"), [static(A100)], "present", facts(profiles=[]))
    assert "offers none" in str(err.value) and "already has 0000:3b:00.0" in str(err.value)


# --- memory the host cannot reserve, a static device other VMs have -----------------------------

@pytest.mark.parametrize("wanted, vgpu_profile", [([{"id": A100}], None), ([], "grid_a100-4c")])
def test_a_host_bound_vm_larger_than_its_host_is_refused(wanted, vgpu_profile):
    with pytest.raises(vp.VmPassthroughError) as err:
        vp.plan(wants(*wanted, vgpu_profile=vgpu_profile), [], "present", facts(memory_mb=8192, host_memory_mb=4095))
    assert str(err.value).startswith("refusing, nothing was changed: VM vm1 has 8192 MiB of memory, more than host "
                                     "esx1 has (4095 MiB): a VM with ")
    assert "could never power on there" in str(err.value)


def test_memory_is_not_checked_for_dynamic_devices_nor_when_nothing_is_added():
    # Dynamic DirectPath lets DRS pick a host at power-on; a device the VM has is no add.
    assert vp.plan(wants(T4_WANT), [], "present", facts(memory_mb=8192, host_memory_mb=4095))["add"]
    assert vp.plan(wants({"id": A100}), [static(A100)], "present",
                   facts(memory_mb=8192, host_memory_mb=4095, locked=True))["add"] == []
    assert vp.plan(wants({"id": A100}), [], "present", facts(memory_mb=4095, host_memory_mb=4095))["add"]


def test_a_static_device_other_vms_have_is_added_with_a_warning():
    held = {A100: [("vm2", "poweredOn"), ("vm3", "poweredOff")]}
    planned = vp.plan(wants({"id": A100}, {"id": INTEL}), [], "present", facts(held=held))
    assert [a["id"] for a in planned["add"]] == [A100, INTEL]
    assert planned["warnings"][0] == ("0000:3b:00.0 is also given to VM vm2 (poweredOn), VM vm3 (poweredOff) on host "
                                      "esx1; only one VM at a time can run with it: VM vm1 will not power on while vm2 runs")
    assert not any(INTEL in w for w in planned["warnings"])
