# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _cmdline


@pytest.mark.parametrize("text, expected", [
    ("", []),
    ("  ro   quiet\n", ["ro", "quiet"]),
    ('root=/dev/sda1 dyndbg="file foo.c +p" quiet', ["root=/dev/sda1", 'dyndbg="file foo.c +p"', "quiet"]),
    ('"a b=c d" e', ['"a b=c d"', "e"]),
    ("intel_iommu=on\tiommu=pt", ["intel_iommu=on", "iommu=pt"]),
])
def test_split(text, expected):
    assert _cmdline.split(text) == expected


@pytest.mark.parametrize("arg, expected", [
    ("quiet", ("quiet", None)),
    ("intel_iommu=on", ("intel_iommu", "on")),
    ("pcie_acs_override=downstream,multifunction", ("pcie_acs_override", "downstream,multifunction")),
    ('dyndbg="file foo.c +p"', ("dyndbg", "file foo.c +p")),
    ("vfio-pci.ids=10de:2204,10de:1aef", ("vfio-pci.ids", "10de:2204,10de:1aef")),
    ("console=ttyS0,115200n8", ("console", "ttyS0,115200n8")),
    ("a=b=c", ("a", "b=c")),
])
def test_key_value(arg, expected):
    assert _cmdline.key_value(arg) == expected


def test_to_dict_last_wins():
    assert _cmdline.to_dict(["intel_iommu=off", "quiet", "intel_iommu=on"]) == {
        "intel_iommu": "on", "quiet": None}
