# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from types import SimpleNamespace

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _vm_mmio

GIB = 1 << 30
MIB = 1 << 20
A100_40GB = ["64G", "32M"]  # BAR1 + BAR3, the 64-bit BARs


@pytest.mark.parametrize("value, size", [
    (64 * GIB, 64 * GIB),
    ("68719476736", 64 * GIB),
    ("64G", 64 * GIB), ("64GB", 64 * GIB), ("64GiB", 64 * GIB), ("64 gib", 64 * GIB),
    ("32M", 32 * MIB), ("256MiB", 256 * MIB), ("1T", 1 << 40), ("4k", 4096), ("512b", 512),
    ("0x1000000000", 64 * GIB),
])
def test_parse_size(value, size):
    assert _vm_mmio.parse_size(value) == size


@pytest.mark.parametrize("value, message", [
    ("16 potatoes", "not a size"), ("1.5G", "not a size"), ("G", "not a size"), ("0xZZ", "hexadecimal"),
    (1.5, "not a size"), (True, "not a size"), (None, "not a size"),
    (0, "power of two"), (-GIB, "power of two"), ("24G", "power of two"), (3 * GIB, "power of two"),
])
def test_parse_size_refuses(value, message):
    with pytest.raises(_vm_mmio.VmMmioError, match=message):
        _vm_mmio.parse_size(value)


@pytest.mark.parametrize("rule, gpus, bars, fixed, used, size, by_count, by_bars", [
    (None, 1, None, None, "count", 32, 32, None),
    (None, 2, None, None, "count", 64, 64, None),       # the example: 2 GPUs -> 64
    (None, None, A100_40GB, None, "bars", 128, None, 128),
    (None, 1, A100_40GB, None, "bars", 128, 32, 128),   # bars given: bars decide, count still reported
    (None, None, None, 256, "fixed", 256, None, None),
    ("count", 4, A100_40GB, None, "count", 128, 128, 128),
    ("fixed", 2, ["16G"], 512, "fixed", 512, 64, 32),
    ("bars", None, [256 * MIB, "32M"], None, "bars", 1, None, 1),  # a T4: tiny BARs
])
def test_size_plan_rules(rule, gpus, bars, fixed, used, size, by_count, by_bars):
    plan = _vm_mmio.size_plan(rule, gpus, bars, fixed)[0]
    assert (plan["rule"], plan["size_gb"], plan["count_rule_gb"], plan["bar_rule_gb"]) == (used, size, by_count, by_bars)
    assert plan["ovmf_x_pcimmio64mb"] == size * 1024
    assert plan["ovmf_fw_cfg"] == "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=%d" % (size * 1024)


@pytest.mark.parametrize("rule, gpus, bars, fixed, warned", [
    ("count", 1, ["32G"], None, "below the 64 GB"),     # holds the BARs, without the bars rule's headroom
    ("fixed", None, ["32G"], 32, "below the 64 GB"),
    (None, None, None, 48, "not a power of two"),
    (None, 2, None, None, None),
    (None, None, A100_40GB, None, None),
])
def test_size_plan_warnings(rule, gpus, bars, fixed, warned):
    warnings = _vm_mmio.size_plan(rule, gpus, bars, fixed)[1]
    if warned:
        assert len(warnings) == 1 and warned in warnings[0]
    else:
        assert warnings == []


def test_needs_64bit_mmio_follows_the_bars():
    assert _vm_mmio.size_plan(bar_sizes=A100_40GB)[0]["needs_64bit_mmio"] is True
    assert _vm_mmio.size_plan(bar_sizes=["256M", "32M"])[0]["needs_64bit_mmio"] is False
    assert _vm_mmio.size_plan(gpu_count=1)[0]["needs_64bit_mmio"] is None


@pytest.mark.parametrize("rule, gpus, bars, fixed, message", [
    (None, None, None, None, "rule count needs gpu_count"),
    ("count", None, A100_40GB, None, "rule count needs gpu_count"),
    ("bars", 2, None, None, "rule bars needs bar_sizes"),
    ("bars", 2, [], None, "rule bars needs bar_sizes"),
    ("fixed", 2, None, None, "rule fixed needs size_gb"),
    ("count", 2, None, 64, "size_gb is only used by rule fixed"),
    (None, None, None, 0, "size_gb must be at least 1"),
    (None, 0, None, None, "gpu_count must be a whole number"),
    (None, None, ["64G", "48G"], None, "power of two"),
    ("auto", 1, None, None, "rule must be one of"),
    # a window smaller than the BARs themselves: the VM would never power on
    ("count", 1, A100_40GB, None, r"^refusing, nothing was changed: 64bitMMIOSizeGB 32 \(rule count\) cannot hold the "
                                  r"given BARs \(64.031 GiB in all\).*use rule bars \(128 GB\) or a size_gb of at least 65$"),
    ("fixed", None, A100_40GB, 64, "64bitMMIOSizeGB 64 \\(rule fixed\\) cannot hold the given BARs"),
])
def test_size_plan_refuses(rule, gpus, bars, fixed, message):
    with pytest.raises(_vm_mmio.VmMmioError, match=message):
        _vm_mmio.size_plan(rule, gpus, bars, fixed)


def option(key, value):
    return SimpleNamespace(key=key, value=value)


def config(firmware="bios", locked=None, extra=()):
    return SimpleNamespace(firmware=firmware, memoryReservationLockedToMax=locked,
                           extraConfig=[option(k, v) for k, v in extra])


def test_read_settings_last_entry_wins_keys_are_case_insensitive_and_empty_is_unset():
    current = _vm_mmio.read_settings(config("efi", True, [
        ("pciPassthru.64bitMMIOSizeGB", "32"), ("govcsim", "TRUE"),
        ("pcipassthru.64bitmmiosizegb", "64"),    # vcsim appends a changed key; the VMX is case-insensitive
        ("pciPassthru.use64bitMMIO", "TRUE"), ("pciPassthru.use64bitMMIO", ""),
    ]))
    assert current == {"firmware": "efi", "memory_reservation_locked_to_max": True,
                       "pciPassthru.use64bitMMIO": None, "pciPassthru.64bitMMIOSizeGB": "64"}
    assert _vm_mmio.read_settings(config())["memory_reservation_locked_to_max"] is False


DONE = [("pciPassthru.use64bitMMIO", "TRUE"), ("pciPassthru.64bitMMIOSizeGB", "128")]


@pytest.mark.parametrize("cfg, firmware, reserve, changed", [
    (config(), "efi", True, ["firmware", "memory_reservation_locked_to_max", "pciPassthru.use64bitMMIO",
                             "pciPassthru.64bitMMIOSizeGB"]),
    (config("efi", True, DONE), "efi", True, []),
    (config("efi", True, [("pciPassthru.use64bitMMIO", "true"), ("pciPassthru.64bitMMIOSizeGB", "128")]),
     "efi", True, []),                                                  # TRUE and true are the same to the VMX
    (config("efi", True, [("pciPassthru.use64bitMMIO", "FALSE"), ("pciPassthru.64bitMMIOSizeGB", "64")]),
     "efi", True, ["pciPassthru.use64bitMMIO", "pciPassthru.64bitMMIOSizeGB"]),
    (config("bios", False, DONE), "keep", False, []),                   # keep what the VM has
    (config("bios", False, DONE), "efi", False, ["firmware"]),
    (config("efi", False, DONE), "keep", True, ["memory_reservation_locked_to_max"]),
])
def test_changes(cfg, firmware, reserve, changed):
    current = _vm_mmio.read_settings(cfg)
    wanted = _vm_mmio.wanted_settings(current, 128, firmware, reserve)
    assert [c["setting"] for c in _vm_mmio.changes(current, wanted)] == changed


def test_config_spec_fields_and_warnings():
    current = _vm_mmio.read_settings(config())
    todo = _vm_mmio.changes(current, _vm_mmio.wanted_settings(current, 64))
    assert _vm_mmio.config_spec_fields(todo) == {
        "firmware": "efi", "memoryReservationLockedToMax": True,
        "extraConfig": [("pciPassthru.use64bitMMIO", "TRUE"), ("pciPassthru.64bitMMIOSizeGB", "64")]}
    [warning] = _vm_mmio.change_warnings("vm1", todo)
    assert "BIOS to EFI" in warning and "will not boot" in warning
    assert _vm_mmio.config_spec_fields([]) == {}


@pytest.mark.parametrize("state, cycle, needs, action", [
    ("poweredOff", False, True, None),
    ("poweredOff", True, True, None),
    ("poweredOn", True, True, "cycle"),
    ("poweredOn", False, False, None),   # nothing to change: a running VM is fine
    ("suspended", False, False, None),
])
def test_power_action(state, cycle, needs, action):
    assert _vm_mmio.power_action("vm1", state, cycle, needs) == action


@pytest.mark.parametrize("state, cycle, message", [
    ("poweredOn", False, "vm1 is powered on.*power_cycle=true"),
    ("suspended", False, "vm1 is suspended"),
    ("suspended", True, "vm1 is suspended"),
])
def test_power_action_refuses(state, cycle, message):
    with pytest.raises(_vm_mmio.VmMmioError, match="refusing, nothing was changed: VM " + message):
        _vm_mmio.power_action("vm1", state, cycle, True)
