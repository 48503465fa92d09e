# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Planned file changes: diff first, write atomically, put everything back on failure.

Modules build a ``FileChanges`` from what files should contain, show ``diff()`` and, outside
check mode, ``apply()`` it. If a follow-up command (update-grub, update-initramfs) fails,
``restore()`` puts back every file byte for byte (and removes the ones it created).
``Pending`` remembers, across runs, a follow-up command that files were written for but that did
not finish (the run was killed), so the next run runs it although the files look done.
"""

from __future__ import absolute_import, division, print_function

import os
import tempfile

__metaclass__ = type

NEW_FILE_MODE = 0o644
# Markers of follow-up commands not yet finished (Pending), under the module's root.
PENDING_DIR = "var/lib/passthrough-gpu"


class FileError(Exception):
    """A file that cannot be read or written."""


def read_text(path):
    """The file's text, or None when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return None
        raise FileError("cannot read %s: %s" % (path, exc))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileError("%s is not UTF-8 text; not editing it" % path)


def _default_mover(src, dest):
    os.rename(src, dest)


def write_atomic(path, text, mode=None, mover=None):
    """Write through a temporary file in the same directory, then rename over ``path``.

    ``mover(src, dest)`` may be AnsibleModule.atomic_move, which also keeps SELinux contexts.
    """
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        _make_dirs(directory)
    if mode is None:
        mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else NEW_FILE_MODE
    handle, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode)
        (mover or _default_mover)(temp, path)
        # AnsibleModule.atomic_move gives a new file 0666 minus the umask (0666 under umask 0).
        os.chmod(path, mode)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _make_dirs(directory):
    """Missing directories, each 0755 whatever the umask (os.makedirs gives parents 0777 - umask)."""
    missing = []
    while directory and not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    for path in reversed(missing):
        os.mkdir(path)
        os.chmod(path, 0o755)


class FileChanges(object):
    """The files a module means to change: ``{path: new text or None (remove)}``."""

    def __init__(self, mover=None):
        self.mover = mover
        self.before = {}
        self.after = {}
        self.applied = []

    def want(self, path, text):
        """Record what ``path`` should contain (None: should not exist); returns whether it differs."""
        if path not in self.before:
            self.before[path] = read_text(path)
        self.after[path] = text
        return self.before[path] != text

    @property
    def changed_paths(self):
        return sorted(p for p in self.after if self.after[p] != self.before[p])

    @property
    def changed(self):
        return bool(self.changed_paths)

    def diff(self, display_root=None):
        """Ansible diff entries, one per changed file, paths shown relative to ``display_root``."""
        entries = []
        for path in self.changed_paths:
            shown = path
            if display_root and display_root != "/":
                shown = "/" + os.path.relpath(path, display_root)
            entries.append({
                "before_header": shown if self.before[path] is not None else "%s (absent)" % shown,
                "after_header": shown if self.after[path] is not None else "%s (absent)" % shown,
                "before": self.before[path] or "",
                "after": self.after[path] or "",
            })
        return entries

    def apply(self):
        """Write every changed file; on any error put back what was already written."""
        try:
            for path in self.changed_paths:
                if self.after[path] is None:
                    os.unlink(path)
                else:
                    write_atomic(path, self.after[path], mover=self.mover)
                self.applied.append(path)
        except (IOError, OSError) as exc:
            self.restore()
            raise FileError("cannot write %s: %s" % (path, exc))

    def restore(self):
        """Put every written file back as it was before ``apply``."""
        errors = []
        for path in reversed(self.applied):
            try:
                if self.before[path] is None:
                    if os.path.exists(path):
                        os.unlink(path)
                else:
                    write_atomic(path, self.before[path], mover=self.mover)
            except (IOError, OSError) as exc:
                errors.append("%s: %s" % (path, exc))
        self.applied = []
        if errors:
            raise FileError("could not restore %s" % "; ".join(errors))


class Pending(object):
    """A follow-up command (update-grub, update-initramfs) written for but not yet finished.

    Files are written first, then the command turns them into what the machine boots. A run
    killed in between leaves files that already say what they should and a boot configuration
    that does not: the next run would find nothing to do, for good. So the marker is written
    before the files and removed once the command succeeded (or the files were put back); while
    it exists, the command is due even when no file changes. ``name`` says whose command it is.
    """

    def __init__(self, root, name, mover=None):
        self.path = os.path.join(root, PENDING_DIR, "%s.pending" % name)
        self.mover = mover

    @property
    def due(self):
        return os.path.exists(self.path)

    def mark(self, commands, paths):
        """Record (before writing ``paths``) that ``commands`` must run after them."""
        text = ["# passthrough.gpu: these files were written and the commands below have not finished;",
                "# the next run of the module runs them. Remove this file only after running them by hand."]
        text += ["file %s" % p for p in paths] + ["command %s" % " ".join(c) for c in commands]
        try:
            write_atomic(self.path, "\n".join(text) + "\n", mover=self.mover)
        except (IOError, OSError) as exc:
            raise FileError("cannot write %s: %s" % (self.path, exc))

    def clear(self):
        try:
            os.unlink(self.path)
        except (IOError, OSError) as exc:
            if os.path.exists(self.path):
                raise FileError("cannot remove %s: %s" % (self.path, exc))
