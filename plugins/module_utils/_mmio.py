# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""How much 64-bit MMIO space a VM needs for the GPUs passed to it.

Two rules, both reported so users can see which one decided:

- ``count``: VMware's rule of thumb, 16 GB per GPU, rounded up to the next power
  of two (1 GPU -> 32, 2 GPUs -> 64). Needs no knowledge of the card.
- ``bars``: the real 64-bit BAR sizes of every function passed through, plus a
  quarter for the VM's own devices and bridge windows, rounded up to a power of
  two. Firmware packs naturally aligned power-of-two BARs into a size-aligned
  window without gaps, so the power of two above the sum is enough space.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

GIB = 1 << 30
MIB = 1 << 20
PER_GPU_GB = 16
# VMware: 64-bit MMIO must be enabled once the devices need 16 GB or more.
LARGE_BAR_THRESHOLD = 16 * GIB
# OVMF's default 64-bit PCI aperture (edk2 since 2021); below it no fw_cfg is needed.
OVMF_DEFAULT_MMIO64_MB = 32 * 1024


class MmioError(ValueError):
    """Input that cannot be sized."""


def next_power_of_two(value):
    """Smallest power of two >= value (value >= 1)."""
    result = 1
    while result < value:
        result <<= 1
    return result


def count_rule_gb(gpu_count):
    if not isinstance(gpu_count, int) or gpu_count < 1:
        raise MmioError("gpu_count must be a whole number of at least 1, got %r" % (gpu_count,))
    # "Round up to the next power of two" in VMware's examples goes strictly above.
    return next_power_of_two(PER_GPU_GB * gpu_count + 1)


def bar_rule_gb(bar_sizes):
    """Size in GB from the 64-bit BAR sizes (bytes) of every assigned function."""
    if not bar_sizes:
        raise MmioError("no 64-bit BARs given: nothing to size by the bar rule")
    for size in bar_sizes:
        if not isinstance(size, int) or size <= 0:
            raise MmioError("BAR sizes must be positive byte counts, got %r" % (size,))
    total = sum(bar_sizes)
    with_headroom = total + total // 4
    return max(1, next_power_of_two(-(-with_headroom // GIB)))


def plan(bar_sizes, gpu_count=1):
    """Both rules, the one to use (bars when BARs are known), and the OVMF value."""
    total = sum(bar_sizes)
    by_count = count_rule_gb(gpu_count)
    by_bars = bar_rule_gb(bar_sizes) if bar_sizes else None
    size_gb = by_bars if by_bars is not None else by_count
    return {
        "bar_total_bytes": total,
        "needs_64bit_mmio": total >= LARGE_BAR_THRESHOLD,
        "esxi_64bit_mmio_size_gb": size_gb,
        "rule": "bars" if by_bars is not None else "count",
        "count_rule_gb": by_count,
        "bar_rule_gb": by_bars,
        "ovmf_x_pcimmio64mb": size_gb * 1024,
        "ovmf_fw_cfg_needed": size_gb * 1024 > OVMF_DEFAULT_MMIO64_MB,
    }
