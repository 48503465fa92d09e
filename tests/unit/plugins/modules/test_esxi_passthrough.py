# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two modules' main(): arguments, one fail_json, warnings; the host is a fake HostApi."""

from types import SimpleNamespace as NS

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _vsphere
from ansible_collections.passthrough.gpu.plugins.modules import esxi_passthrough, esxi_passthrough_info

A100, VGA = "0000:3b:00.0", "0000:03:00.0"
CONNECTION = {"hostname": "vc.example.com", "username": "admin", "password": "s3cret-Pass", "esxi_hostname": "esx1"}


class Host:
    """The smallest HostApi: an A100 (capable) and the console VGA (not capable)."""

    def __init__(self, params):
        assert params["hostname"] == "vc.example.com" and params["esxi_hostname"] == "esx1"
        self.info = {A100: NS(id=A100, passthruCapable=True, passthruEnabled=False, passthruActive=False),
                     VGA: NS(id=VGA, passthruCapable=False, passthruEnabled=False, passthruActive=False)}
        self.updates = []

    def read(self):
        devices = [NS(id=A100, vendorId=4318, deviceId=0x20F1, deviceName="GA100 [A100 PCIe 40GB]", vendorName="NVIDIA"),
                   NS(id=VGA, vendorId=0x102B, deviceId=0x536, deviceName="G200eW3", vendorName="Matrox")]
        return {"name": "esx1", "hardware.pciDevice": devices, "pciPassthruInfo": list(self.info.values()),
                "graphicsConfig": NS(hostDefaultGraphicsType="shared", sharedPassthruAssignmentPolicy="performance",
                                     deviceType=[])}

    def update_passthru(self, changes):
        self.updates.append(changes)
        for pci_id, enabled, _apply_now, _label in changes:
            self.info[pci_id].passthruEnabled = enabled

    def update_graphics(self, *args):
        self.updates.append(args)
        if args[0] == "shared":  # this fake refuses it, after the passthrough change
            raise _vsphere.VsphereError("UpdateGraphicsConfig failed: vim.fault.HostConfigFault: busy")

    def vgpu_profiles(self, parent):
        raise AssertionError("no parent was read")


@pytest.fixture
def host(monkeypatch):
    made = []

    def factory(params):
        made.append(Host(params))
        return made[-1]
    monkeypatch.setattr(_vsphere, "HostApi", factory)
    return made


def test_enable_in_check_mode_then_for_real(run_module, host):
    code, check = run_module(esxi_passthrough, dict(CONNECTION, devices=["A100"], _ansible_check_mode=True))
    assert code == 0 and check["changed"] is True and host[0].updates == []
    assert check["devices"][0]["enabled"] is True and check["reboot_required"] is True
    code, apply = run_module(esxi_passthrough, dict(CONNECTION, devices=["A100"]))
    assert code == 0 and apply["changed"] is True and host[1].updates == [[(A100, True, False, None)]]
    assert apply["devices"] == check["devices"] and apply["rebooted"] is False
    assert apply["devices"][0] == {"id": A100, "name": "GA100 [A100 PCIe 40GB]", "vendor_name": "NVIDIA",
                                   "vendor_id": "10de", "device_id": "20f1", "capable": True, "enabled": True,
                                   "active": False, "hardware_label": None}


def test_a_refusal_is_one_failure_with_the_message(run_module, host):
    code, result = run_module(esxi_passthrough, dict(CONNECTION, devices=["A100", VGA]))
    assert code == 1 and result["failed"] is True and result.get("changed") is not True
    assert "cannot enable passthrough on host esx1 for 0000:03:00.0 (102b:0536 G200eW3)" in result["msg"]
    assert host[0].updates == []


def test_warnings_reach_the_user(run_module, host):
    code, result = run_module(esxi_passthrough, dict(CONNECTION, devices=["A100"], graphics_type="sharedDirect"))
    assert code == 0 and any("sharedDirect is for vGPU" in w for w in result["warnings"])
    assert host[0].updates == [[(A100, True, False, None)], ("sharedDirect", "performance", {})]


def test_a_failure_after_a_change_fails_with_changed_true(run_module, host):
    code, result = run_module(esxi_passthrough, dict(CONNECTION, devices=["A100"], graphics_type="shared",
                                                     assignment_policy="consolidation"))
    assert code == 1 and result["failed"] is True and result["changed"] is True
    assert result["msg"] == ("UpdateGraphicsConfig failed: vim.fault.HostConfigFault: busy; already done: "
                             "UpdatePassthruConfig for 1 device(s) (0000:3b:00.0)")


def test_hardware_label_needs_devices(run_module, host):
    code, result = run_module(esxi_passthrough, dict(CONNECTION, graphics_type="shared", hardware_label="t4"))
    assert code == 1 and "hardware_label" in result["msg"] and "devices" in result["msg"] and host == []


def test_something_to_do_is_required(run_module, host):
    code, result = run_module(esxi_passthrough, dict(CONNECTION))
    assert code == 1 and "one of the following is required: devices, graphics_type, assignment_policy" in result["msg"]
    assert host == []


def test_info_returns_one_key(run_module, host):
    code, result = run_module(esxi_passthrough_info, dict(CONNECTION, devices=["10de:20f1"]))
    assert code == 0 and result["changed"] is False
    assert set(result) - {"changed", "invocation", "warnings"} == {"passthrough"}
    info = result["passthrough"]
    assert [d["id"] for d in info["devices"]] == [A100] and info["vgpu_profiles"] == []
    assert info["graphics"]["default_type"] == "shared"
