# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _mmio

GIB = 1 << 30
MIB = 1 << 20


@pytest.mark.parametrize("gpus, size", [(1, 32), (2, 64), (3, 64), (4, 128), (8, 256)])
def test_count_rule(gpus, size):
    assert _mmio.count_rule_gb(gpus) == size


@pytest.mark.parametrize("bars, size", [
    ([16 * GIB], 32),                              # the lab's ivshmem BAR
    ([256 * MIB, 32 * MIB], 1),                    # T4-class: BAR1 + BAR3
    ([128 * GIB, 32 * MIB], 256),                  # A100 80GB-class
    ([64 * GIB, 32 * MIB] * 2, 256),               # two A100 40GB-class
    ([32 * GIB, 32 * MIB] * 4, 256),               # four 32 GB cards
    ([12 * GIB], 16),
])
def test_bar_rule(bars, size):
    assert _mmio.bar_rule_gb(bars) == size


def test_bar_rule_always_fits_the_bars():
    for total_gib in range(1, 300):
        assert _mmio.bar_rule_gb([total_gib * GIB]) * GIB >= total_gib * GIB * 5 // 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None, True and 0])
def test_count_rule_refuses(bad):
    with pytest.raises(_mmio.MmioError, match="gpu_count"):
        _mmio.count_rule_gb(bad)


@pytest.mark.parametrize("bars, message", [([], "no 64-bit BARs"), ([0], "positive"), ([-5], "positive"),
                                           (["16G"], "positive")])
def test_bar_rule_refuses(bars, message):
    with pytest.raises(_mmio.MmioError, match=message):
        _mmio.bar_rule_gb(bars)


def test_plan_prefers_bars_and_reports_both():
    plan = _mmio.plan([128 * GIB, 32 * MIB], gpu_count=1)
    assert plan["rule"] == "bars" and plan["esxi_64bit_mmio_size_gb"] == 256
    assert plan["count_rule_gb"] == 32 and plan["bar_rule_gb"] == 256
    assert plan["ovmf_x_pcimmio64mb"] == 256 * 1024 and plan["ovmf_fw_cfg_needed"] is True
    assert plan["needs_64bit_mmio"] is True


def test_plan_without_bars_falls_back_to_count():
    plan = _mmio.plan([], gpu_count=2)
    assert plan["rule"] == "count" and plan["esxi_64bit_mmio_size_gb"] == 64
    assert plan["bar_rule_gb"] is None and plan["needs_64bit_mmio"] is False


def test_plan_small_gpu_needs_no_fw_cfg():
    plan = _mmio.plan([256 * MIB, 32 * MIB])
    assert plan["needs_64bit_mmio"] is False and plan["ovmf_fw_cfg_needed"] is False
