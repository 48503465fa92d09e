# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_esxi: device naming, the plan, the reboot sequence and results, on a fake host (no pyVmomi)."""

from types import SimpleNamespace as NS

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _esxi
from ansible_collections.passthrough.gpu.plugins.module_utils._vsphere import VsphereError

A100, T4, T4B, FLEX, VGA, NIC = "0000:3b:00.0", "0000:af:00.0", "0000:b0:00.0", "0000:d8:00.0", "0000:03:00.0", "0000:0b:00.0"


def s16(value):
    """As the API holds PCI ids: signed shorts."""
    return value - 0x10000 if value > 0x7FFF else value


# id, vendor, device, name, capable -- two T4s, an Intel id above 0x7fff, a non-capable VGA
DEVICES = [
    (VGA, 0x102B, 0x0536, "Integrated Matrox G200eW3 Graphics Controller", False),
    (NIC, 0x15AD, 0x07B0, "vmxnet3 Virtual Ethernet Controller", False),
    (A100, 0x10DE, 0x20F1, "GA100 [A100 PCIe 40GB]", True),
    (T4, 0x10DE, 0x1EB8, "TU104GL [Tesla T4]", True),
    (T4B, 0x10DE, 0x1EB8, "TU104GL [Tesla T4]", True),
    (FLEX, 0x8086, 0x56C0, "ATS-M [Data Center GPU Flex 170]", True),
]


class FakeHost:
    """What _vsphere.HostApi gives _esxi, with a log of every call that would reach vSphere.

    As on ESXi: a GPU with a vGPU driver (here the T4s) runs in the graphics type configured at the
    last boot (graphicsInfo); applyNow is ignored for the devices in ``no_apply_now``; a ``faults``
    entry {method: message} makes that method fail (after ``partial`` devices of a batch, for
    update_passthru)."""

    def __init__(self, enabled=(), active=(), in_maintenance=False, graphics=True, back_after=0, reboot_fault=None,
                 stale=0, stuck=(), no_apply_now=(), faults=None, partial=0, labels=None, running="shared"):
        self.devices = [NS(id=i, vendorId=s16(v), deviceId=s16(d), deviceName=n, vendorName="vendor") for i, v, d, n, c in DEVICES]
        self.info = dict((i, NS(id=i, passthruCapable=c, passthruEnabled=i in enabled, passthruActive=i in active,
                                hardwareLabel=(labels or {}).get(i)))
                         for i, v, d, n, c in DEVICES)
        self.graphics = NS(hostDefaultGraphicsType="shared", sharedPassthruAssignmentPolicy="performance",
                           deviceType=[]) if graphics else None
        self.running = {T4: running, T4B: running}  # the graphics type each vGPU-capable GPU runs in
        self.in_maintenance = in_maintenance
        self.boot = 100
        self.back_after = back_after  # boot_state() answers None this many times after a reboot
        self.stale = stale  # then the old boot time this many times (vCenter: not gone down yet)
        self.stuck = stuck  # devices a reboot does not activate
        self.no_apply_now = no_apply_now
        self.faults = dict(faults or {})
        if reboot_fault:
            self.faults["reboot"] = reboot_fault
        self.partial = partial
        self.calls = []

    def _fail(self, method):
        if method in self.faults:
            raise VsphereError(self.faults[method])

    def read(self):
        self.calls.append("read")
        graphics_info = [NS(pciId=FLEX, graphicsType="basic")] + [
            NS(pciId=i, graphicsType="direct" if self.info[i].passthruActive else t) for i, t in sorted(self.running.items())]
        return {"name": "esx1", "hardware.pciDevice": self.devices, "pciPassthruInfo": list(self.info.values()),
                "graphicsConfig": self.graphics, "runtime.bootTime": self.boot,
                "runtime.inMaintenanceMode": self.in_maintenance, "parent": "cluster",
                "graphicsInfo": graphics_info}

    def update_passthru(self, changes):
        self.calls.append(("update_passthru", tuple(changes)))
        applied = changes[:self.partial] if "update_passthru" in self.faults else changes
        for pci_id, enabled, apply_now, label in applied:
            self.info[pci_id].passthruEnabled = enabled
            if apply_now and pci_id not in self.no_apply_now:
                self.info[pci_id].passthruActive = enabled
            if label is not None:
                self.info[pci_id].hardwareLabel = label
        self._fail("update_passthru")

    def update_graphics(self, default_type, policy, device_types):
        self.calls.append(("update_graphics", default_type, policy))
        self._fail("update_graphics")
        self.graphics = NS(hostDefaultGraphicsType=default_type, sharedPassthruAssignmentPolicy=policy,
                           deviceType=[NS(deviceId=k, graphicsType=v) for k, v in device_types.items()])

    def enter_maintenance(self, timeout):
        self.calls.append("enter_maintenance")
        self._fail("enter_maintenance")
        self.in_maintenance = True

    def exit_maintenance(self, timeout):
        self.calls.append("exit_maintenance")
        self._fail("exit_maintenance")
        self.in_maintenance = False

    def reboot(self):
        self.calls.append("reboot")
        self._fail("reboot")
        assert self.in_maintenance, "RebootHost_Task without force needs maintenance mode"
        for info in self.info.values():
            if info.id not in self.stuck:
                info.passthruActive = info.passthruEnabled
        if self.graphics is not None:
            types = dict((t.deviceId, t.graphicsType) for t in self.graphics.deviceType)
            for pci_id in self.running:
                self.running[pci_id] = types.get(pci_id, self.graphics.hostDefaultGraphicsType)
        self.boot += 1

    def boot_state(self):
        self.calls.append("boot_state")
        if self.back_after:
            self.back_after -= 1
            return None
        if self.stale:
            self.stale -= 1
            return "connected", self.boot - 1
        return "connected", self.boot

    def vgpu_profiles(self, parent):
        self.calls.append(("vgpu_profiles", parent))
        return ["grid_t4-1q"]

    def changes(self):
        return [c for c in self.calls if c not in ("read", "boot_state")]


def records(host=None):
    host = host or FakeHost()
    return _esxi.device_records(host.devices, list(host.info.values()))


def params(**overrides):
    values = dict(devices=[A100], state="enabled", apply_now=False, graphics_type=None, assignment_policy=None,
                  reboot=False, reboot_timeout=600)
    values.update(overrides)
    return values


def run(host, check_mode=False, **overrides):
    clock = [0.0]

    def sleep(seconds):
        clock[0] += seconds
    return _esxi.run_passthrough(params(**overrides), host, check_mode, clock=lambda: clock[0], sleep=sleep)


# --- records and naming --------------------------------------------------------------------------

@pytest.mark.parametrize("pci_id, vendor, device", [(A100, "10de", "20f1"), (FLEX, "8086", "56c0"), (NIC, "15ad", "07b0")])
def test_records_turn_signed_ids_into_hex(pci_id, vendor, device):
    record = next(r for r in records() if r["id"] == pci_id)
    assert (record["vendor_id"], record["device_id"]) == (vendor, device)


def test_signed_ids_are_what_the_fake_gives():
    raw = {d.id: d for d in FakeHost().devices}
    assert (raw[A100].vendorId, raw[FLEX].vendorId) == (4318, -32634)


@pytest.mark.parametrize("text, expected", [
    ("0000:af:00.0", "0000:af:00.0"), ("AF:00.0", "0000:af:00.0"), ("0001:3B:00.7", "0001:3b:00.7"),
    ("af:00.8", None), ("10de:1eb8", None), ("T4", None), ("0000:af:00", None),
])
def test_normalize_pci_id(text, expected):
    assert _esxi.normalize_pci_id(text) == expected


@pytest.mark.parametrize("selectors, expected", [
    (["0000:3b:00.0"], [A100]),
    (["3B:00.0"], [A100]),
    (["10de:1eb8"], [T4, T4B]),           # vendor:device: every device with the id
    (["8086:56C0"], [FLEX]),              # id above 0x7fff (signed -32634 in the API)
    (["TU104GL [Tesla T4]"], [T4, T4B]),  # whole name: every device with it
    (["tu104gl [tesla t4]"], [T4, T4B]),  # case-insensitive
    (["A100"], [A100]),                   # part of one name
    (["flex 170"], [FLEX]),
    (["T4"], [T4, T4B]),                  # part of one name that two devices share
    ([FLEX, "A100", "0000:3b:00.0"], [A100, FLEX]),  # each once, in the host's order
])
def test_match_devices(selectors, expected):
    assert [r["id"] for r in _esxi.match_devices(selectors, records(), "esx1")] == expected


def test_unknown_selectors_are_all_named_with_the_capable_devices():
    with pytest.raises(VsphereError) as err:
        _esxi.match_devices(["0000:99:00.0", "dead:beef", "A100", "Quadro", " "], records(), "esx1")
    msg = str(err.value)
    assert msg.startswith("no PCI device on host esx1 matches '0000:99:00.0', 'dead:beef', 'Quadro', ' '")
    assert "0000:3b:00.0 (10de:20f1 GA100 [A100 PCIe 40GB])" in msg and VGA not in msg


@pytest.mark.parametrize("text", ["controller", "["])
def test_a_part_of_different_names_is_ambiguous(text):
    with pytest.raises(VsphereError, match="part of the names of different devices") as err:
        _esxi.match_devices([text], records(), "esx1")
    assert "by PCI id, by vendor:device or by their whole name" in str(err.value)


# --- plan ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("enabled, active, state, apply_now, expected", [
    ((), (), "enabled", False, [(A100, True, False, None)]),
    ((A100,), (), "enabled", False, []),                       # enabled, waits for a reboot: no-op
    ((A100,), (), "enabled", True, [(A100, True, True, None)]),  # apply_now: sent again to take effect
    ((A100,), (A100,), "enabled", True, []),
    ((A100,), (A100,), "disabled", False, [(A100, False, False, None)]),
    ((), (A100,), "disabled", False, []),                      # disabled, still active until reboot
    ((), (A100,), "disabled", True, [(A100, False, True, None)]),
    ((), (), "disabled", True, []),
])
def test_plan_passthru(enabled, active, state, apply_now, expected):
    selected = _esxi.match_devices([A100], records(FakeHost(enabled, active)), "esx1")
    assert _esxi.plan_passthru(selected, state, apply_now, "esx1") == expected


def test_plan_is_one_change_per_id_for_all_devices():
    selected = _esxi.match_devices(["10de:1eb8", A100], records(), "esx1")
    assert _esxi.plan_passthru(selected, "enabled", False, "esx1") == [
        (A100, True, False, None), (T4, True, False, None), (T4B, True, False, None)]


def test_enabling_a_device_that_is_not_capable_is_refused():
    selected = _esxi.match_devices([A100, "Matrox"], records(), "esx1")
    with pytest.raises(VsphereError) as err:
        _esxi.plan_passthru(selected, "enabled", False, "esx1")
    assert "cannot enable passthrough on host esx1 for 0000:03:00.0 (102b:0536 Integrated Matrox" in str(err.value)
    assert "nothing was changed" in str(err.value) and A100 not in str(err.value)
    assert _esxi.plan_passthru(selected, "disabled", False, "esx1") == []  # disabling it is a no-op


@pytest.mark.parametrize("default_type, policy, expected", [
    (None, None, ("shared", "performance")),
    ("sharedDirect", None, ("sharedDirect", "performance")),
    (None, "consolidation", ("shared", "consolidation")),
])
def test_plan_graphics_keeps_what_is_not_asked(default_type, policy, expected):
    current = {"default_type": "shared", "assignment_policy": "performance", "device_types": {T4: "shared"}}
    wanted = _esxi.plan_graphics(current, default_type, policy, "esx1")
    assert (wanted["default_type"], wanted["assignment_policy"]) == expected
    assert wanted["device_types"] == {T4: "shared"}
    assert current["default_type"] == "shared"  # not modified in place


def test_graphics_without_a_graphics_manager_is_refused():
    assert _esxi.plan_graphics(None, None, None, "esx1") is None
    with pytest.raises(VsphereError, match="no graphics manager"):
        _esxi.plan_graphics(None, "sharedDirect", None, "esx1")


# --- the module's run: check, apply, idempotence, one batched call ------------------------------------

def test_check_apply_check_apply():
    host = FakeHost()
    check = run(host, check_mode=True, devices=[A100, "10de:1eb8"])
    assert check["changed"] is True and host.changes() == []
    assert [(d["id"], d["enabled"], d["active"]) for d in check["devices"]] == [
        (A100, True, False), (T4, True, False), (T4B, True, False)]
    assert check["reboot_required"] is True and check["rebooted"] is False
    apply = run(host, devices=[A100, "10de:1eb8"])
    assert host.changes() == [("update_passthru", ((A100, True, False, None), (T4, True, False, None), (T4B, True, False, None)))]
    assert {k: apply[k] for k in ("changed", "devices", "reboot_required")} == {
        k: check[k] for k in ("changed", "devices", "reboot_required")}
    assert apply["diff"] == check["diff"]
    assert apply["diff"]["before"]["devices"][T4] == {"enabled": False, "active": False, "hardware_label": None}
    assert apply["diff"]["after"]["devices"][T4] == {"enabled": True, "active": False, "hardware_label": None}
    assert run(host, check_mode=True, devices=[A100, "10de:1eb8"])["changed"] is False
    again = run(host, devices=[A100, "10de:1eb8"])
    assert again["changed"] is False and again["reboot_required"] is True
    assert len(host.changes()) == 1
    assert host.calls.count("read") == 5  # once per run, plus one read-back after the change


def test_apply_now_makes_devices_active_without_a_reboot():
    host = FakeHost(enabled=(A100,))
    result = run(host, apply_now=True)
    assert result["changed"] and result["devices"][0]["active"] and not result["reboot_required"]
    assert host.changes() == [("update_passthru", ((A100, True, True, None),))]


def test_reboot_goes_through_maintenance_mode_only_when_needed():
    host = FakeHost(enabled=(A100,), back_after=2)
    check = run(host, check_mode=True, reboot=True)
    assert check["changed"] and check["rebooted"] and check["devices"][0]["active"] and host.changes() == []
    result = run(host, reboot=True)
    assert host.changes() == ["enter_maintenance", "reboot", "exit_maintenance"]
    assert host.calls.count("boot_state") == 3  # twice not back yet, then connected with a newer boot time
    assert result["changed"] and result["rebooted"] and not result["reboot_required"]
    assert result["devices"][0]["active"] and not host.in_maintenance
    assert result["diff"]["before"]["devices"][A100] == {"enabled": True, "active": False, "hardware_label": None}
    again = run(host, reboot=True)
    assert again["changed"] is False and again["rebooted"] is False and len(host.changes()) == 3


def test_passthrough_still_pending_after_the_reboot_is_warned_about():
    host = FakeHost(enabled=(A100, FLEX), stuck=(FLEX,))
    result = run(host, devices=[A100, FLEX], reboot=True)
    assert result["rebooted"] and result["reboot_required"]
    assert result["warnings"] == ["after the reboot passthrough is still not in effect for "
                                  "0000:d8:00.0 (8086:56c0 ATS-M [Data Center GPU Flex 170])"]
    assert result["changed"] is True
    assert not run(FakeHost(enabled=(A100,)), reboot=True)["warnings"]


def test_a_host_still_connected_with_its_old_boot_time_is_not_back_yet():
    host = FakeHost(enabled=(A100,), stale=3)
    run(host, reboot=True)
    assert host.calls.count("boot_state") == 4
    assert host.changes()[-1] == "exit_maintenance"


def test_a_host_already_in_maintenance_mode_stays_in_it():
    host = FakeHost(enabled=(A100,), in_maintenance=True)
    run(host, reboot=True)
    assert host.changes() == ["reboot"] and host.in_maintenance


def test_no_reboot_without_being_asked():
    host = FakeHost()
    result = run(host)
    assert result["reboot_required"] and "reboot" not in host.changes()


def test_a_host_that_does_not_come_back_is_an_error_within_the_timeout():
    host = FakeHost(enabled=(A100,), back_after=1000)
    with pytest.raises(VsphereError) as err:
        run(host, reboot=True, reboot_timeout=60)
    assert "not connected again with a new boot time within reboot_timeout (60 s)" in str(err.value)
    assert "stays in maintenance mode" in str(err.value)
    assert host.calls.count("boot_state") == 7  # at 0, 10, ..., 60 s


def test_a_refused_reboot_leaves_maintenance_mode_and_says_what_was_changed():
    host = FakeHost(reboot_fault="RebootHost_Task failed: InvalidState: busy")
    with pytest.raises(VsphereError) as err:
        run(host, reboot=True)
    assert host.changes()[1:] == ["enter_maintenance", "reboot", "exit_maintenance"]
    assert str(err.value) == ("RebootHost_Task failed: InvalidState: busy; already done: "
                              "UpdatePassthruConfig for 1 device(s) (0000:3b:00.0)")
    assert err.value.changed is True


def test_a_refused_reboot_with_nothing_else_done_is_no_change():
    host = FakeHost(enabled=(A100,), reboot_fault="RebootHost_Task failed: InvalidState: busy")
    with pytest.raises(VsphereError) as err:
        run(host, reboot=True)
    assert host.changes() == ["enter_maintenance", "reboot", "exit_maintenance"]
    assert str(err.value) == "RebootHost_Task failed: InvalidState: busy" and err.value.changed is False


@pytest.mark.parametrize("faults, partial, overrides, done", [
    # UpdateGraphicsConfig fails after UpdatePassthruConfig succeeded
    ({"update_graphics": "UpdateGraphicsConfig failed: InvalidArgument"}, 0, {"graphics_type": "sharedDirect",
                                                                              "state": "disabled", "devices": [T4]},
     None),
    # maintenance mode fails after the change
    ({"enter_maintenance": "entering maintenance mode failed: Timedout"}, 0, {"reboot": True}, None),
    # leaving maintenance mode fails after the reboot
    ({"exit_maintenance": "exiting maintenance mode failed: Timedout"}, 0, {"reboot": True},
     "entered maintenance mode; rebooted the host (RebootHost_Task)"),
])
def test_a_failure_after_a_change_reports_changed_and_what_was_done(faults, partial, overrides, done):
    host = FakeHost(enabled=(T4,), active=(T4,), faults=faults, partial=partial)
    with pytest.raises(VsphereError) as err:
        run(host, **overrides)
    msg = str(err.value)
    assert err.value.changed is True, msg
    assert msg.startswith(list(faults.values())[0] + "; already done: UpdatePassthruConfig for 1 device(s) (")
    if done:
        assert msg.endswith(done)


def test_a_batch_that_fails_half_applied_reports_changed():
    host = FakeHost(faults={"update_passthru": "UpdatePassthruConfig failed: HostConfigFault: busy"}, partial=1)
    with pytest.raises(VsphereError) as err:
        run(host, devices=[A100, FLEX])
    assert err.value.changed is True
    assert str(err.value) == ("UpdatePassthruConfig failed: HostConfigFault: busy; the host applied part of the "
                              "batch anyway: 0000:3b:00.0")
    host = FakeHost(faults={"update_passthru": "UpdatePassthruConfig failed: HostConfigFault: busy"})
    with pytest.raises(VsphereError) as err:
        run(host, devices=[A100, FLEX])
    assert err.value.changed is False and str(err.value) == "UpdatePassthruConfig failed: HostConfigFault: busy"


# --- apply_now that the host does not honour, pending graphics, hardware labels -----------------------

def test_apply_now_ignored_by_the_host_reboots_when_asked():
    """ESXi ignores applyNow for a device it cannot hot-apply: the reboot is decided from the state read
    back after UpdatePassthruConfig, and a run that changed nothing reports no change."""
    host = FakeHost(no_apply_now=(T4,))
    first = run(host, devices=[T4], apply_now=True)
    assert first["changed"] and first["reboot_required"] and first["devices"][0]["active"] is False
    again = run(host, devices=[T4], apply_now=True)  # sent again, still not active: no change
    assert again["changed"] is False and again["reboot_required"] is True
    assert "reboot" not in host.changes()
    rebooting = run(host, devices=[T4], apply_now=True, reboot=True)
    assert rebooting["changed"] and rebooting["rebooted"] and rebooting["devices"][0]["active"]
    assert host.changes()[-3:] == ["enter_maintenance", "reboot", "exit_maintenance"]
    assert not rebooting["reboot_required"] and not rebooting["warnings"]
    done = run(host, devices=[T4], apply_now=True, reboot=True)
    assert done["changed"] is False and done["rebooted"] is False
    assert host.changes().count("reboot") == 1


def test_apply_now_with_reboot_in_one_run_reboots_when_apply_now_did_not_take():
    host = FakeHost(no_apply_now=(T4,))
    result = run(host, devices=[T4, A100], apply_now=True, reboot=True)
    assert result["changed"] and result["rebooted"] and [d["active"] for d in result["devices"]] == [True, True]
    assert host.changes() == [("update_passthru", ((A100, True, True, None), (T4, True, True, None))),
                              "enter_maintenance", "reboot", "exit_maintenance"]
    # a host that honours applyNow is not rebooted
    host = FakeHost()
    result = run(host, devices=[T4], apply_now=True, reboot=True)
    assert result["changed"] and not result["rebooted"] and "reboot" not in host.changes()


def test_a_pending_graphics_type_is_remembered_by_the_next_run():
    host = FakeHost()
    args = dict(devices=[], graphics_type="sharedDirect")
    first = run(host, **args)
    assert first["changed"] and first["reboot_required"]
    second = run(host, **args)  # configured already; the GPUs still run in shared until a reboot
    assert second["changed"] is False and second["reboot_required"] is True
    assert run(host, check_mode=True, reboot=True, **args)["rebooted"] is True
    third = run(host, reboot=True, **args)
    assert third["changed"] and third["rebooted"] and not third["reboot_required"]
    assert host.running == {T4: "sharedDirect", T4B: "sharedDirect"}
    fourth = run(host, reboot=True, **args)
    assert fourth["changed"] is False and not fourth["rebooted"] and host.changes().count("reboot") == 1
    # the info module says so too
    assert _esxi.run_info({"devices": None}, FakeHost(running="sharedDirect"))["passthrough"]["reboot_required"]


def test_graphics_type_of_gpus_without_a_shared_driver_never_waits():
    info = [NS(pciId=FLEX, graphicsType="basic"), NS(pciId=A100, graphicsType="direct"), NS(pciId=T4, graphicsType="shared"),
            NS(pciId=T4B, graphicsType="sharedDirect")]
    config = {"default_type": "sharedDirect", "assignment_policy": "performance", "device_types": {T4B: "shared"}}
    assert _esxi.graphics_pending(info, config) == [T4, T4B]
    assert _esxi.graphics_pending(info, None) == []
    assert _esxi.graphics_pending(info, dict(config, default_type="shared", device_types={})) == [T4B]


def test_a_graphics_type_pending_is_not_a_reason_to_reboot_for_a_devices_only_run():
    host = FakeHost(running="sharedDirect")  # configured shared, running sharedDirect
    result = run(host, devices=[A100], reboot=True, apply_now=True)
    assert not result["rebooted"] and not result["reboot_required"]


def test_hardware_label_is_set_in_the_same_batch_and_idempotent():
    host = FakeHost(labels={T4B: "t4"})
    check = run(host, check_mode=True, devices=["10de:1eb8"], hardware_label="t4")
    assert check["changed"] and [d["hardware_label"] for d in check["devices"]] == ["t4", "t4"]
    apply = run(host, devices=["10de:1eb8"], hardware_label="t4")
    assert host.changes() == [("update_passthru", ((T4, True, False, "t4"), (T4B, True, False, None)))]
    assert apply["devices"] == check["devices"] and apply["diff"] == check["diff"]
    assert apply["diff"]["before"]["devices"][T4]["hardware_label"] is None
    assert run(host, devices=["10de:1eb8"], hardware_label="t4")["changed"] is False
    relabel = run(host, devices=[T4], hardware_label="")  # "" removes it; passthrough untouched
    assert relabel["changed"] and relabel["devices"][0]["hardware_label"] is None
    assert host.changes()[-1] == ("update_passthru", ((T4, True, False, ""),))
    assert run(host, devices=[T4])["changed"] is False  # left out: not managed
    info = _esxi.run_info({"devices": [T4B]}, host)["passthrough"]
    assert info["devices"][0]["hardware_label"] == "t4"


def test_a_hardware_label_the_host_does_not_keep_is_an_error():
    """pyVmomi drops hardwareLabel below API 7.0.2: the label must be read back."""
    host = FakeHost()
    host.update_passthru = lambda changes: FakeHost.update_passthru(host, [c[:3] + (None,) for c in changes])
    with pytest.raises(VsphereError) as err:
        run(host, devices=[A100], hardware_label="a100")
    assert "did not take hardware_label 'a100' for 0000:3b:00.0" in str(err.value) and err.value.changed is True


def test_refusals_change_nothing():
    host = FakeHost()
    for overrides in ({"devices": [A100, "Matrox"]}, {"devices": ["nothing-like-this"]}):
        with pytest.raises(VsphereError):
            run(host, **overrides)
    assert host.changes() == []


def test_graphics_change_check_apply_idempotent():
    host = FakeHost()
    args = dict(devices=[], graphics_type="sharedDirect", assignment_policy="consolidation")
    check = run(host, check_mode=True, **args)
    assert check["changed"] and check["graphics"]["default_type"] == "sharedDirect" and host.changes() == []
    assert check["diff"]["before"]["graphics"]["default_type"] == "shared"
    assert check["reboot_required"] is True  # ESXi: Xorg restart or reboot
    apply = run(host, **args)
    assert host.changes() == [("update_graphics", "sharedDirect", "consolidation")]
    assert apply["graphics"] == check["graphics"] and apply["changed"] and apply["reboot_required"]
    again = run(host, **args)
    assert again["changed"] is False and again["reboot_required"] is True  # until the host reboots


def test_vgpu_with_passthrough_enabled_is_warned_about():
    host = FakeHost()
    result = run(host, graphics_type="sharedDirect")
    assert any("sharedDirect is for vGPU" in w and A100 in w for w in result["warnings"])
    assert not run(FakeHost(), graphics_type="sharedDirect", state="disabled")["warnings"]


def test_disable_without_apply_now_waits_for_a_reboot():
    host = FakeHost(enabled=(A100,), active=(A100,))
    result = run(host, state="disabled")
    assert result["devices"][0]["enabled"] is False and result["devices"][0]["active"] is True
    assert result["reboot_required"]


# --- info ---------------------------------------------------------------------------------------

def test_info_lists_every_device_with_its_graphics_type_and_the_vgpu_profiles():
    host = FakeHost(enabled=(A100,), active=(A100,))
    result = _esxi.run_info({"devices": None}, host)
    info = result["passthrough"]
    assert result["changed"] is False and [d["id"] for d in info["devices"]] == [d[0] for d in DEVICES]
    t4 = next(d for d in info["devices"] if d["id"] == T4)
    assert t4["graphics_type"] == "shared" and t4["vendor_id"] == "10de" and t4["capable"] is True
    assert info["vgpu_profiles"] == ["grid_t4-1q"] and ("vgpu_profiles", "cluster") in host.calls
    assert info["graphics"] == {"default_type": "shared", "assignment_policy": "performance", "device_types": {}}
    assert info["reboot_required"] is False and host.changes() == [("vgpu_profiles", "cluster")]


def test_info_filters_by_the_same_names():
    info = _esxi.run_info({"devices": ["8086:56c0"]}, FakeHost(enabled=(FLEX,)))["passthrough"]
    assert [(d["id"], d["vendor_id"]) for d in info["devices"]] == [(FLEX, "8086")]
    assert info["reboot_required"] is True


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_reboot_timeout_below_one_second_is_refused(timeout):
    with pytest.raises(VsphereError, match=r"^reboot_timeout must be at least 1 second, got %d; nothing was changed$"
                       % timeout):
        _esxi.check_params({"reboot_timeout": timeout})
    _esxi.check_params({"reboot_timeout": 1})
