# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fingerprint a whole root tree, so a refused run can be shown to have changed nothing."""

import hashlib
import os
import stat


def _entry(path):
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        # The link itself, not what it points to: sysfs links in these trees often dangle.
        digest = hashlib.sha256(os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest()
    elif stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read()).hexdigest()
    else:
        digest = None
    # mtime too: an atomic rewrite with the same bytes, or a temp file made and removed in a
    # directory, is still a write the refusal should not have made.
    return (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), digest, info.st_mtime_ns)


def fingerprint(root):
    """``{relative path: (type, mode, sha256 or None, mtime_ns)}`` of every entry under ``root``."""
    state = {".": _entry(root)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(directory, name)
            state[os.path.relpath(full, root)] = _entry(full)
    return state


def differences(before, after):
    """Readable lines naming every added, removed or changed entry."""
    lines = []
    for rel in sorted(set(before) | set(after)):
        if rel not in after:
            lines.append("removed %s" % rel)
        elif rel not in before:
            lines.append("added %s" % rel)
        elif before[rel] != after[rel]:
            lines.append("changed %s: %r -> %r" % (rel, before[rel], after[rel]))
    return lines
