# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _grub

MAIN = "/etc/default/grub"
DEBIAN = """# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX=""
"""
IOMMU = ["intel_iommu=on", "iommu=pt"]


def edit_main(text, args=None, state="present"):
    return _grub.edit([(MAIN, text)], IOMMU if args is None else args, state)[0]


@pytest.mark.parametrize("before, after", [
    # double quotes, the Debian default
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'),
    # single quotes stay single
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet splash'\n", "GRUB_CMDLINE_LINUX_DEFAULT='quiet splash intel_iommu=on iommu=pt'\n"),
    # a bare word gains quotes only when it needs them
    ("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\n'),
    ("GRUB_CMDLINE_LINUX_DEFAULT=\n", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"\n'),
    # escaped quotes inside the value survive
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\\"file x.c +p\\""\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet dyndbg=\\"file x.c +p\\" intel_iommu=on iommu=pt"\n'),
    # a trailing comment, indentation and export are kept
    ('  export GRUB_CMDLINE_LINUX_DEFAULT="quiet"   # ours\n',
     '  export GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"   # ours\n'),
    # a conflicting value is replaced, duplicates collapse
    ('GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=off quiet intel_iommu=igfx_off"\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on quiet iommu=pt"\n'),
    # CRLF endings and a missing final newline are kept
    ('GRUB_TIMEOUT=5\r\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\r\n',
     'GRUB_TIMEOUT=5\r\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"\r\n'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"', 'GRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on iommu=pt"'),
    # missing variable: a line is added; a commented-out one is not an assignment
    ("GRUB_TIMEOUT=5\n#GRUB_CMDLINE_LINUX_DEFAULT=\"x\"\n",
     "GRUB_TIMEOUT=5\n#GRUB_CMDLINE_LINUX_DEFAULT=\"x\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on iommu=pt\"\n"),
    ("GRUB_TIMEOUT=5", "GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on iommu=pt\"\n"),
    ("", "GRUB_CMDLINE_LINUX_DEFAULT=\"intel_iommu=on iommu=pt\"\n"),
    # two assignments: the last one counts and is the one edited
    ('GRUB_CMDLINE_LINUX_DEFAULT="a"\nGRUB_CMDLINE_LINUX_DEFAULT="b"\n',
     'GRUB_CMDLINE_LINUX_DEFAULT="a"\nGRUB_CMDLINE_LINUX_DEFAULT="b intel_iommu=on iommu=pt"\n'),
    # a key GRUB_CMDLINE_LINUX already has is set there and not repeated
    ('GRUB_CMDLINE_LINUX="iommu=soft"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n',
     'GRUB_CMDLINE_LINUX="iommu=pt"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=on"\n'),
    # the file's other lines, even ones with shell in them, are untouched
    (DEBIAN, DEBIAN.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"')),
])
def test_edit_present(before, after):
    assert edit_main(before) == after
    assert edit_main(after) == after  # a second run changes nothing


@pytest.mark.parametrize("before, args, after", [
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet pcie_acs_override=downstream"\n', ["pcie_acs_override"],
     'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'),
    ('GRUB_CMDLINE_LINUX="iommu=pt a"\nGRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n', ["iommu"],
     'GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX_DEFAULT=""\n'),
    ('GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n', ["iommu=soft"], 'GRUB_CMDLINE_LINUX_DEFAULT="iommu=pt"\n'),
    ("GRUB_TIMEOUT=5\n", ["iommu"], "GRUB_TIMEOUT=5\n"),
])
def test_edit_absent(before, args, after):
    assert edit_main(before, args, "absent") == after


def test_drop_in_that_overrides_is_edited():
    cloud = "GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0'\n"
    files = [(MAIN, DEBIAN), ("/etc/default/grub.d/50-cloudimg-settings.cfg", cloud)]
    texts = _grub.edit(files, IOMMU)
    assert texts[0] == DEBIAN
    assert texts[1] == "GRUB_CMDLINE_LINUX_DEFAULT='console=tty1 console=ttyS0 intel_iommu=on iommu=pt'\n"
    assert _grub.configured([(MAIN, texts[0]), (files[1][0], texts[1])]) == (
        "console=tty1 console=ttyS0 intel_iommu=on iommu=pt")


@pytest.mark.parametrize("text, message", [
    ('GRUB_CMDLINE_LINUX_DEFAULT="$GRUB_CMDLINE_LINUX_DEFAULT quiet"\n', r"line 1: GRUB_CMDLINE_LINUX_DEFAULT uses shell expansion \(\$\)"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="`cat /x`"\n', "uses shell expansion"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet\nsplash"\n', "does not close on the same line"),
    ("GRUB_CMDLINE_LINUX_DEFAULT='quiet\n", "does not close on the same line"),
    ('GRUB_CMDLINE_LINUX_DEFAULT="quiet"; GRUB_TIMEOUT=1\n', "only a comment may follow"),
    ("GRUB_CMDLINE_LINUX=$(cat /etc/x)\n", "only a comment may follow"),
])
def test_refuses_what_it_cannot_edit_safely(text, message):
    with pytest.raises(_grub.GrubError, match=message):
        edit_main(text)


@pytest.mark.parametrize("value, style, expected", [
    ("a b", "double", '"a b"'), ('a "b"', "double", '"a \\"b\\""'), ("$x", "double", '"\\$x"'),
    ("a b", "single", "'a b'"), ("it's", "single", '"it\'s"'), ("quiet", "bare", "quiet"),
    ("a b", "bare", '"a b"'), ("", "bare", ""),
    ("vfio-pci.ids=10de:2204,10de:1aef", "bare", "vfio-pci.ids=10de:2204,10de:1aef")])
def test_quote(value, style, expected):
    assert _grub.quote(value, style) == expected


def test_configured_joins_linux_then_default():
    text = 'GRUB_CMDLINE_LINUX="root=/dev/sda1"\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
    assert _grub.configured([(MAIN, text)]) == "root=/dev/sda1 quiet"
