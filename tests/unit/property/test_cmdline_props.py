# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of kernel command line editing (_cmdline) and of what the planner calls satisfied.

Every edit keeps the bytes it is not about: the white space, order and spelling of the other
arguments, and everything after ``--``.
"""

import pytest
from hypothesis import assume, given, strategies as st

from ansible_collections.passthrough.gpu.plugins.module_utils import _bootloader, _cmdline

from cmdline_strategies import PROPS, after_separator, arg_lists, before_separator, cmdlines, key_of, wanted_args


def present_keys(pieces):
    return set(key_of(a) for a in before_separator([a for _g, a in pieces]))


@PROPS
@given(cmdlines(gap_chars=" \t\n"))
def test_split_gives_back_the_arguments_as_written(line):
    text, _leading, pieces, _tail = line
    assert _cmdline.split(text) == [a for _g, a in pieces]


@PROPS
@given(st.text(), st.sampled_from(["present", "absent"]))
def test_no_arguments_is_no_change_for_any_text(text, state):
    assert _cmdline.edit(text, [], state) == text


@PROPS
@given(cmdlines(), arg_lists())
def test_absent_arguments_that_are_not_there_change_nothing(line, args):
    text, _leading, pieces, _tail = line
    assume(not present_keys(pieces) & set(key_of(a) for a in args))
    assert _cmdline.edit(text, args, "absent") == text


@PROPS
@given(cmdlines(), arg_lists())
def test_new_arguments_go_before_init_and_touch_no_other_byte(line, args):
    text, leading, pieces, tail = line
    assume(not present_keys(pieces) & set(key_of(a) for a in args))
    result = _cmdline.edit(text, args, "present")
    old = [a for _g, a in pieces]
    at = old.index("--") if "--" in old else len(old)
    assert _cmdline.split(result) == old[:at] + args + old[at:]
    if not old:
        # only white space: the arguments, then that white space
        assert result == " ".join(args) + text
    elif "--" not in old:
        body = text[:len(text) - len(tail)]
        assert result == body + "".join(" " + a for a in args) + tail
    elif at > 0:
        # everything up to the white space before "--" stays, then the new arguments, then the rest
        start = len("".join(g + a for g, a in pieces[:at]))
        assert result == text[:start] + "".join(" " + a for a in args) + text[start:]
    else:
        assert result == leading + " ".join(args) + (leading or " ") + text[len(leading):]


@PROPS
@given(cmdlines(), st.data())
def test_a_new_value_replaces_the_first_in_place_and_drops_the_others(line, data):
    text, _leading, pieces, _tail = line
    old = [a for _g, a in pieces]
    head = before_separator(old)
    assume(head)
    key = key_of(data.draw(st.sampled_from(head)))
    assume(key != "--" and key)
    arg = data.draw(st.sampled_from([key, "%s=new,value" % key]))
    try:
        _cmdline.validate([arg])
    except _cmdline.CmdlineError:
        assume(False)  # a key only a quoted argument can have (white space in it)
    result = _cmdline.edit(text, [arg], "present")
    hits = [i for i, a in enumerate(head) if key_of(a) == key]
    expected = [arg if i == hits[0] else a for i, a in enumerate(head) if i not in hits[1:]]
    assert _cmdline.split(result) == expected + after_separator(old)
    if len(hits) == 1:
        # the argument's own bytes change, nothing else
        start = len("".join(g + a for g, a in pieces[:hits[0]])) + len(pieces[hits[0]][0])
        assert result == text[:start] + arg + text[start + len(head[hits[0]]):]


@PROPS
@given(cmdlines(), arg_lists(), st.sampled_from(["present", "absent"]))
def test_edit_is_idempotent(line, args, state):
    once = _cmdline.edit(line[0], args, state)
    assert _cmdline.edit(once, args, state) == once


@PROPS
@given(cmdlines(), arg_lists(), st.sampled_from(["present", "absent"]))
def test_the_result_is_what_was_asked_and_init_arguments_stay(line, args, state):
    text, _leading, pieces, _tail = line
    result = _cmdline.edit(text, args, state)
    tokens = _cmdline.split(result)
    assert _bootloader.satisfied(result, args, state)
    assert after_separator(tokens) == after_separator([a for _g, a in pieces])
    keys = set(key_of(a) for a in args)
    unrelated = [a for a in before_separator([a for _g, a in pieces]) if key_of(a) not in keys]
    assert [a for a in before_separator(tokens) if key_of(a) not in keys] == unrelated


@PROPS
@given(cmdlines(), arg_lists(), st.booleans())
def test_removing_what_was_added_gives_back_every_byte(line, args, by_key):
    text, _leading, pieces, _tail = line
    assume(not present_keys(pieces) & set(key_of(a) for a in args))
    added = _cmdline.edit(text, args, "present")
    remove = [key_of(a) for a in args] if by_key else args
    assert _cmdline.edit(added, remove, "absent") == text


@PROPS
@given(st.one_of(st.text(max_size=12), st.from_regex(_cmdline.WANTED_RE), wanted_args().map(lambda a: a + "\n")))
def test_an_accepted_argument_is_exactly_one_argument(arg):
    try:
        _cmdline.validate([arg])
    except _cmdline.CmdlineError:
        return
    assert _cmdline.split(arg) == [arg]
    key, value = _cmdline.key_value(arg)
    assert arg == (key if value is None else "%s=%s" % (key, value))
    assert _cmdline.edit("ro", [arg]) == "ro " + arg


@PROPS
@given(st.text(alphabet=" \t\n\"'=ab", min_size=1, max_size=6).filter(lambda s: any(c in s for c in " \t\n\"'")))
def test_white_space_and_quotes_are_refused_with_the_argument_named(junk):
    arg = "key=" + junk
    with pytest.raises(_cmdline.CmdlineError, match="is not a kernel argument this module can manage") as caught:
        _cmdline.edit("ro quiet", [arg], "present")
    assert repr(arg) in str(caught.value)


@PROPS
@given(cmdlines(separator=False), st.text(alphabet='ab =x\t', max_size=6), arg_lists(),
       st.sampled_from(["present", "absent"]))
def test_an_unclosed_quote_is_refused_or_edited_truthfully(line, inside, args, state):
    # The kernel reads an unclosed quote to the end of the line: anything appended would go inside it.
    text = line[0] + (" " if line[0].strip() else "") + 'k="' + inside
    try:
        result = _cmdline.edit(text, args, state)
    except _cmdline.CmdlineError as exc:
        assert "unclosed double quote" in str(exc)
        return
    assert _bootloader.satisfied(result, args, state)
    assert _cmdline.edit(result, args, state) == result


@PROPS
@given(cmdlines(), arg_lists())
def test_satisfied_looks_only_at_the_kernels_arguments(line, args):
    # What follows "--" goes to init: the same key there neither satisfies nor blocks the kernel's.
    text = line[0]
    init = " ".join(a + "x" if "=" in a else a + "=x" for a in args)
    for state in ("present", "absent"):
        edited = _cmdline.edit(text, args, state)
        with_init = edited + (" " if "--" in _cmdline.split(edited) else " -- ") + init
        assert _bootloader.satisfied(with_init, args, state)


@PROPS
@given(cmdlines(), wanted_args().filter(lambda a: "-" in a.split("=")[0] or "_" in a.split("=")[0]), st.data())
def test_dash_and_underscore_spell_the_same_key(line, arg, data):
    # the kernel's parameq(): vfio_pci.ids=... is removed by vfio-pci.ids, replaced by vfio-pci.ids=...
    key, sep, value = arg.partition("=")
    respelled = "".join(data.draw(st.sampled_from("-_")) if c in "-_" else c for c in key) + sep + value
    text = respelled + " " + line[0]
    removed = _cmdline.edit(text, [key], "absent")
    assert key_of(arg) not in [key_of(a) for a in before_separator(_cmdline.split(removed))]
    assert _cmdline.split(_cmdline.edit(text, [arg], "present"))[0] == arg
    assert _bootloader.satisfied(respelled, [arg], "present") and not _bootloader.satisfied(respelled, [arg], "absent")


# Bugs these properties found, kept as plain examples.
@pytest.mark.parametrize("arg", ["iommu=pt\n", "quiet\n", "a='b'", "video=efifb:off\x00", "a=b\x1b[0m"])
def test_regression_an_argument_with_a_newline_quote_or_control_character_is_refused(arg):
    # "$" in the pattern matched before a final newline: "iommu=pt\n" went into the files as is
    with pytest.raises(_cmdline.CmdlineError, match="is not a kernel argument this module can manage"):
        _cmdline.edit("ro quiet", [arg])


@pytest.mark.parametrize("text, args, state, expected", [
    # appended inside the quote, the argument was never there and every run appended it again
    ('root=/dev/sda1 dyndbg="file foo.c +p', ["iommu=pt"], "present", None),
    ('quiet "', ["iommu=pt"], "present", None),
    # in place and before "--" there is no quote to fall into
    ('iommu=on dyndbg="x', ["iommu=pt"], "present", 'iommu=pt dyndbg="x'),
    ('quiet -- init="x', ["iommu=pt"], "present", 'quiet iommu=pt -- init="x'),
    ('quiet dyndbg="x', ["quiet"], "absent", 'dyndbg="x'),
])
def test_regression_an_unclosed_quote_is_never_appended_to(text, args, state, expected):
    if expected is None:
        with pytest.raises(_cmdline.CmdlineError, match="unclosed double quote"):
            _cmdline.edit(text, args, state)
    else:
        assert _cmdline.edit(text, args, state) == expected


@pytest.mark.parametrize("cmdline, args, state, expected", [
    # init's arguments neither satisfy nor block the kernel's: before, "a=2 -- a=1" asked for a
    # reboot forever and grubby removed an init argument on every run
    ("a=2 -- a=1", ["a=2"], "present", True),
    ("-- iommu=pt", ["iommu=pt"], "present", False),
    ("quiet -- iommu", ["iommu"], "absent", True),
    ("iommu -- quiet", ["iommu"], "absent", False),
    # '-' and '_' are one character in a parameter name
    ("vfio_pci.ids=10de:2204", ["vfio-pci.ids=10de:2204"], "present", True),
    ("vfio_pci.ids=10de:2204", ["vfio-pci.ids"], "absent", False),
])
def test_regression_satisfied_stops_at_the_init_separator(cmdline, args, state, expected):
    assert _bootloader.satisfied(cmdline, args, state) is expected


@pytest.mark.parametrize("text, args, state, expected", [
    # a guide's vfio_pci.ids stayed, and bound the GPU, after vfio-pci.ids was removed
    ("quiet vfio_pci.ids=10de:2204 splash", ["vfio-pci.ids"], "absent", "quiet splash"),
    ("quiet vfio_pci.ids=10de:2204 splash", ["vfio-pci.ids=10de:1aef"], "present", "quiet vfio-pci.ids=10de:1aef splash"),
    ("iommu-pt intel-iommu=off", ["intel_iommu=on"], "present", "iommu-pt intel_iommu=on"),
])
def test_regression_a_key_spelled_with_dash_or_underscore_is_one_key(text, args, state, expected):
    assert _cmdline.edit(text, args, state) == expected


def test_regression_asking_both_spellings_is_a_conflict():
    with pytest.raises(_cmdline.CmdlineError, match="more than one value asked for vfio_pci.ids"):
        _cmdline.validate(["vfio-pci.ids=10de:2204", "vfio_pci.ids=10de:1aef"])
