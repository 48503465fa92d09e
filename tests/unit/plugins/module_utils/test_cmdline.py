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


@pytest.mark.parametrize("text, args, state, expected", [
    # present: appended after everything, unrelated white space untouched
    ("quiet  splash", ["intel_iommu=on", "iommu=pt"], "present", "quiet  splash intel_iommu=on iommu=pt"),
    # a conflicting value is replaced in place
    ("intel_iommu=off quiet", ["intel_iommu=on"], "present", "intel_iommu=on quiet"),
    # duplicates collapse onto the first
    ("a=1 b a=2 c", ["a=3"], "present", "a=3 b c"),
    ("a=3 b", ["a=3"], "present", "a=3 b"),
    ("", ["a=1"], "present", "a=1"),
    # bare flags
    ("ro quiet", ["quiet"], "present", "ro quiet"),
    ("ro iommu=pt", ["iommu"], "present", "ro iommu"),
    # init's arguments stay after "--"
    ("x -- a=1", ["a=2"], "present", "x a=2 -- a=1"),
    ("-- init", ["k"], "present", "k -- init"),
    # quoted values are whole arguments
    ('d="x y" q', ["q"], "absent", 'd="x y"'),
    ('d="x y" q', ["e=1"], "present", 'd="x y" q e=1'),
    # absent: a key removes every value, key=value only that one
    ("a=1 b a=2 c", ["a"], "absent", "b c"),
    ("a=1 b a=2 c", ["a=2"], "absent", "a=1 b c"),
    ("b c", ["a"], "absent", "b c"),
    ("\tq  r", ["q"], "absent", "\tr"),
    ("q r\n", ["r"], "absent", "q\n"),
])
def test_edit(text, args, state, expected):
    assert _cmdline.edit(text, args, state) == expected


@pytest.mark.parametrize("args, message", [
    (["a b"], "not a kernel argument"),
    (['a="b c"'], "not a kernel argument"),
    ([""], "not a kernel argument"),
    (["=x"], "not a kernel argument"),
    (["--"], "not a kernel argument|separates init"),
    ([5], "not a kernel argument"),
    (["a=1", "a=2"], "more than one value asked for a"),
])
def test_edit_refuses(args, message):
    with pytest.raises(_cmdline.CmdlineError, match=message):
        _cmdline.edit("ro", args)
