# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Kernel arguments in GRUB's defaults: /etc/default/grub and its grub.d drop-ins.

grub-mkconfig sources /etc/default/grub, then /etc/default/grub.d/*.cfg in name order, and
boots with ``${GRUB_CMDLINE_LINUX} ${GRUB_CMDLINE_LINUX_DEFAULT}``. The assignment that counts
is the last one, which may sit in a drop-in (Ubuntu cloud images set GRUB_CMDLINE_LINUX_DEFAULT
in 50-cloudimg-settings.cfg), so that is the one edited; where neither file assigns a variable,
a line is added to /etc/default/grub. Only that line changes; every other byte stays.
"""

from __future__ import absolute_import, division, print_function

import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _cmdline

__metaclass__ = type

LINUX = "GRUB_CMDLINE_LINUX"
DEFAULT = "GRUB_CMDLINE_LINUX_DEFAULT"
ASSIGN_RE = re.compile(r"^(?P<prefix>[ \t]*(?:export[ \t]+)?(?P<name>GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=)(?P<rest>.*?)(?P<eol>\r?\n?)$")
BARE_VALUE_RE = re.compile(r"[^\s;#&|<>()\"'$`\\]*")
SUFFIX_RE = re.compile(r"^(?:[ \t]+(?:#.*)?)?$")
NEEDS_QUOTES_RE = re.compile(r"[^A-Za-z0-9_.,:=/+@%-]")
# The variables assigned anywhere else on a line (after another assignment or a command, with
# readonly, +=): the shell sets them there too, so such a line is refused, not skipped.
ELSEWHERE_RE = re.compile(r"(?<![A-Za-z0-9_])GRUB_CMDLINE_LINUX(?:_DEFAULT)?\+?=")
# A comment starts at a '#' that begins a word.
COMMENT_RE = re.compile(r"(?:^|[ \t;&|])#.*")


class GrubError(ValueError):
    """A GRUB defaults file this module will not edit, with the reason."""


class Assignment(object):
    """One ``NAME=value`` line, split so the value can be replaced alone."""

    def __init__(self, name, prefix, style, value, suffix, eol):
        self.name = name
        self.prefix = prefix
        self.style = style
        self.value = value
        self.suffix = suffix
        self.eol = eol

    def render(self, value):
        return self.prefix + quote(value, self.style) + self.suffix + self.eol


def _double_quoted(rest, where):
    out = []
    index = 1
    while index < len(rest):
        char = rest[index]
        if char == "\\" and index + 1 < len(rest) and rest[index + 1] in "\"\\$`":
            out.append(rest[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out), index + 1
        if char in "$`":
            raise GrubError("%s uses shell expansion (%s): edit it by hand or drop the expansion" % (where, char))
        out.append(char)
        index += 1
    raise GrubError("%s opens a double quote it does not close on the same line" % where)


def parse_assignment(line, where="line"):
    """The assignment on ``line``, None if it assigns neither variable; GrubError if too complex."""
    match = ASSIGN_RE.match(line)
    if not match:
        code = COMMENT_RE.sub("", line)
        found = ELSEWHERE_RE.search(code)
        if found:
            raise GrubError("%s: assigns %s where this module does not edit it (only NAME=value or export "
                            "NAME=value alone on a line): edit it by hand" % (where, found.group(0).rstrip("+=")))
        return None
    rest = match.group("rest")
    where = "%s: %s" % (where, match.group("name"))
    if rest.startswith('"'):
        style = "double"
        value, end = _double_quoted(rest, where)
    elif rest.startswith("'"):
        style = "single"
        end = rest.find("'", 1) + 1
        if end == 0:
            raise GrubError("%s opens a single quote it does not close on the same line" % where)
        value = rest[1:end - 1]
    else:
        style = "bare"
        end = BARE_VALUE_RE.match(rest).end()
        value = rest[:end]
        if re.search(r"(?:^|:)~", value):
            # the shell puts a home directory there (tilde expansion in assignments)
            raise GrubError("%s: an unquoted value with ~ at its start or after ':' is expanded by the "
                            "shell: quote the value" % where)
    suffix = rest[end:]
    if not SUFFIX_RE.match(suffix):
        raise GrubError("%s is followed by %r; only a comment may follow the value" % (where, suffix.strip()))
    return Assignment(match.group("name"), match.group("prefix"), style, value, suffix, match.group("eol"))


def quote(value, style):
    """Write ``value`` back in the style it was read in, when that style can hold it."""
    if style == "single" and "'" not in value:
        return "'%s'" % value
    if style == "bare" and not NEEDS_QUOTES_RE.search(value):
        return value
    return '"%s"' % re.sub(r'(["\\$`])', r"\\\1", value)


def lines(text):
    """``text`` in lines as the shell reads it: only a newline ends a line.

    Not str.splitlines(), which also ends one at a carriage return, form feed, NEL (U+0085) or
    U+2028: a comment holding one of those would hide a "line" the shell never runs.
    """
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def find_last(files, name):
    """``(file index, line index, Assignment)`` of the assignment that counts, or None.

    ``files`` is a list of ``(path, text)`` in the order grub-mkconfig sources them.
    """
    found = None
    for file_index, (path, text) in enumerate(files):
        for line_index, line in enumerate(lines(text)):
            assignment = parse_assignment(line, "%s line %d" % (path, line_index + 1))
            if assignment and assignment.name == name:
                found = (file_index, line_index, assignment)
    return found


def _set_value(texts, found, value):
    file_index, line_index, assignment = found
    file_lines = lines(texts[file_index])
    file_lines[line_index] = assignment.render(value)
    texts[file_index] = "".join(file_lines)


def configured(files):
    """The arguments grub-mkconfig will put on a normal boot's ``linux`` line."""
    values = []
    for name in (LINUX, DEFAULT):
        found = find_last(files, name)
        if found:
            values.append(found[2].value)
    return " ".join(v for v in values if v.strip())


def edit(files, args, state="present"):
    """New texts for ``files`` with ``args`` present or absent; unchanged files keep their text.

    present: an argument whose key GRUB_CMDLINE_LINUX already has is set there (it then holds
    for recovery boots too) and removed from GRUB_CMDLINE_LINUX_DEFAULT; any other goes to
    GRUB_CMDLINE_LINUX_DEFAULT. absent: removed from both.
    """
    _cmdline.validate(args)
    texts = [text for _path, text in files]
    linux = find_last(files, LINUX)
    default = find_last(files, DEFAULT)
    linux_value = linux[2].value if linux else ""
    default_value = default[2].value if default else ""
    if state == "absent":
        linux_value = _cmdline.edit(linux_value, args, "absent")
        default_value = _cmdline.edit(default_value, args, "absent")
    else:
        linux_keys = set(_cmdline.param_key(_cmdline.key_value(a)[0]) for a in _cmdline.split(linux_value))
        for arg in args:
            key = _cmdline.key_value(arg)[0]
            if _cmdline.param_key(key) in linux_keys:
                linux_value = _cmdline.edit(linux_value, [arg], "present")
                default_value = _cmdline.edit(default_value, [key], "absent")
            else:
                default_value = _cmdline.edit(default_value, [arg], "present")
    if linux and linux_value != linux[2].value:
        _set_value(texts, linux, linux_value)
    if default and default_value != default[2].value:
        _set_value(texts, default, default_value)
    elif not default and default_value:
        main = texts[0]
        if main and not main.endswith("\n"):
            main += "\n"
        texts[0] = main + "%s=%s\n" % (DEFAULT, quote(default_value, "double"))
    return texts
