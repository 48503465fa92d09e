# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Kernel command line parsing, following the kernel's own rules (lib/cmdline.c).

Arguments are separated by white space; double quotes group white space into a
value (``key="a b"``) or a whole argument and are not part of the value.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Arguments that decide IOMMU and passthrough behaviour; reported by the facts modules.
IOMMU_KEYS = (
    "intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict",
    "pcie_acs_override", "vfio-pci.ids", "vfio_iommu_type1.allow_unsafe_interrupts",
    "video", "initcall_blacklist",
)


def split(text):
    """Split a command line into raw arguments, quotes kept as written."""
    args = []
    current = []
    in_quote = False
    for char in text:
        if char == '"':
            in_quote = not in_quote
        if char.isspace() and not in_quote:
            if current:
                args.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        args.append("".join(current))
    return args


def key_value(arg):
    """``(key, value)`` of one raw argument; value is None for a bare flag."""
    bare = arg.replace('"', "")
    if "=" not in bare:
        return bare, None
    key, value = bare.split("=", 1)
    return key, value


def to_dict(args):
    """Last one wins, as in the kernel for ordinary parameters."""
    return dict(key_value(arg) for arg in args)
