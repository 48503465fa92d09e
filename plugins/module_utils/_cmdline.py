# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Kernel command line parsing and editing, following the kernel's rules (lib/cmdline.c).

Arguments are separated by white space; double quotes group white space into a
value (``key="a b"``) or a whole argument and are not part of the value. Edits
touch only the arguments they are about: every other byte, white space included,
stays as it was.
"""

from __future__ import absolute_import, division, print_function

import re

__metaclass__ = type

# Arguments that decide IOMMU and passthrough behaviour; reported by the facts modules.
IOMMU_KEYS = (
    "intel_iommu", "amd_iommu", "iommu", "iommu.passthrough", "iommu.strict",
    "pcie_acs_override", "vfio-pci.ids", "vfio_iommu_type1.allow_unsafe_interrupts",
    "video", "initcall_blacklist",
)
# Everything after a lone "--" goes to init, not the kernel.
INIT_SEPARATOR = "--"
# \Z, not $: "$" also matches before a final newline, and "iommu=pt\n" would go into the files as is.
# No quotes (the kernel's and grub.cfg's) and no control characters in a value.
WANTED_RE = re.compile(r"^[A-Za-z0-9_.-]+(=[^\s\"'\x00-\x1f\x7f]*)?\Z")


class CmdlineError(ValueError):
    """An argument that cannot go on a kernel command line as asked."""


def _pieces(text):
    """``([(gap, token), ...], tail)``: each token with the white space before it."""
    pieces = []
    gap = []
    token = []
    in_quote = False
    for char in text:
        if char == '"':
            in_quote = not in_quote
        if char.isspace() and not in_quote:
            if token:
                pieces.append(("".join(gap), "".join(token)))
                gap, token = [], []
            gap.append(char)
        else:
            token.append(char)
    if token:
        pieces.append(("".join(gap), "".join(token)))
        gap = []
    return pieces, "".join(gap)


def split(text):
    """Split a command line into raw arguments, quotes kept as written."""
    return [token for _gap, token in _pieces(text)[0]]


def key_value(arg):
    """``(key, value)`` of one raw argument; value is None for a bare flag."""
    bare = arg.replace('"', "")
    if "=" not in bare:
        return bare, None
    key, value = bare.split("=", 1)
    return key, value


def param_key(key):
    """``key`` as the kernel compares parameter names: '-' and '_' are the same character.

    parameq() in kernel/params.c, used for module and early parameters: ``vfio-pci.ids`` and
    ``vfio_pci.ids`` set the same thing, so removing one spelling must remove the other.
    """
    return key.replace("-", "_")


def to_dict(args):
    """Last one wins, as in the kernel for ordinary parameters."""
    return dict(key_value(arg) for arg in args)


def validate(args):
    """Arguments as users give them: ``key`` or ``key=value``, no white space or quotes."""
    for arg in args:
        if not isinstance(arg, str) or not WANTED_RE.match(arg):
            raise CmdlineError(
                "%r is not a kernel argument this module can manage: use key or key=value with "
                "letters, digits, '_', '.', '-' in the key and no white space, quotes or control characters"
                % (arg,))
        if arg == INIT_SEPARATOR:
            raise CmdlineError("'--' separates init's arguments and cannot be managed")
    keys = [param_key(key_value(arg)[0]) for arg in args]
    duplicates = sorted(set(k for k in keys if keys.count(k) > 1))
    if duplicates:
        raise CmdlineError("more than one value asked for %s" % ", ".join(duplicates))
    return list(args)


def _matches(token, key, value):
    got_key, got_value = key_value(token)
    return param_key(got_key) == param_key(key) and (value is None or got_value == value)


def edit(text, args, state="present"):
    """Return ``text`` with ``args`` present (replacing other values of their keys) or absent.

    present ``key=value``: the first argument with that key becomes ``key=value`` in place,
    later ones with that key go; appended (before a ``--``) when the key is not there.
    absent ``key``: every argument with that key goes; absent ``key=value``: only that value.
    Keys compare as the kernel compares them (param_key): ``vfio_pci.ids`` is ``vfio-pci.ids``.
    """
    validate(args)
    pieces, tail = _pieces(text)
    tokens = [token for _gap, token in pieces]
    appended = []
    for arg in args:
        key, value = key_value(arg)
        init_at = tokens.index(INIT_SEPARATOR) if INIT_SEPARATOR in tokens else len(tokens)
        hits = [i for i in range(init_at) if tokens[i] is not None and _matches(tokens[i], key, None)]
        if state == "absent":
            for i in hits:
                if _matches(tokens[i], key, value):
                    tokens[i] = None
        elif hits:
            tokens[hits[0]] = arg
            for i in hits[1:]:
                tokens[i] = None
        else:
            appended.append(arg)
    if appended and text.count('"') % 2 and INIT_SEPARATOR not in tokens:
        # The kernel reads an unclosed quote to the end: what is appended would be inside it.
        raise CmdlineError("the command line has an unclosed double quote (%s): an argument added "
                           "at its end would become part of the quoted value; close the quote first"
                           % pieces[-1][1])
    return _render(pieces, tokens, tail, appended)


def _render(pieces, tokens, tail, appended):
    leading = pieces[0][0] if pieces else ""
    kept = [(gap, token) for (gap, _old), token in zip(pieces, tokens) if token is not None]
    at = next((i for i, (_gap, token) in enumerate(kept) if token == INIT_SEPARATOR), len(kept))
    kept[at:at] = [(" ", arg) for arg in appended]
    if not kept:
        return leading + tail
    # The first argument keeps the line's leading white space; any other needs a separator.
    kept = [(leading, kept[0][1])] + [(gap or " ", token) for gap, token in kept[1:]]
    return "".join(gap + token for gap, token in kept) + tail
