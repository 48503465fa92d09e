# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Which initramfs generator a root uses, the vfio lines it needs, and the command that rebuilds it.

Pure: reads files under ``root`` and returns planned content; the caller writes (``_files``)
and runs the rebuild command.
"""

from __future__ import absolute_import, division, print_function

import os
import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _files

__metaclass__ = type

TOOLS = ("initramfs-tools", "dracut", "mkinitcpio")
CHOICES = ("auto",) + TOOLS + ("none",)

INITRAMFS_TOOLS_MODULES = "etc/initramfs-tools/modules"
DRACUT_CONF = "etc/dracut.conf.d/passthrough-gpu-vfio.conf"
MKINITCPIO_CONF = "etc/mkinitcpio.conf"

BEGIN = "# BEGIN passthrough.gpu.vfio_bind: vfio-pci loads before the host's GPU drivers"
END = "# END passthrough.gpu.vfio_bind"
HEADER = "# managed by passthrough.gpu.vfio_bind: vfio-pci loads before the host's GPU drivers"

# vfio_pci first: the order these tools load modules in, and vfio-pci must win the race
# against the GPU driver. vfio_virqfd became part of vfio in Linux 6.2.
VFIO_MODULES = ("vfio_pci", "vfio", "vfio_iommu_type1")
VIRQFD = "vfio_virqfd"
VIRQFD_MERGED = (6, 2)

REBUILD = {
    "initramfs-tools": ["update-initramfs", "-u", "-k", "all"],
    "dracut": ["dracut", "--regenerate-all", "--force"],
    "mkinitcpio": ["mkinitcpio", "-P"],
}

_BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
MKINITCPIO_MODULES_RE = re.compile(r"^(?P<head>\s*MODULES=\()(?P<body>[^)]*)(?P<tail>\).*)$")
KERNEL_VERSION_RE = re.compile(r"^(\d+)\.(\d+)")


class InitramfsError(Exception):
    """An initramfs setup this module cannot edit safely."""


def _has_binary(root, name):
    return any(os.path.exists(os.path.join(root, d, name)) for d in _BIN_DIRS)


def detect(root, wanted="auto"):
    """The generator to configure: ``wanted`` unless it is ``auto``.

    dracut is looked for first: on Debian, installing it replaces initramfs-tools but leaves
    /etc/initramfs-tools behind, so that directory alone proves nothing.
    """
    if wanted not in CHOICES:
        raise InitramfsError("initramfs must be one of %s, not '%s'" % (", ".join(CHOICES), wanted))
    if wanted != "auto":
        return wanted
    if _has_binary(root, "dracut"):
        return "dracut"
    if _has_binary(root, "mkinitcpio") or os.path.exists(os.path.join(root, MKINITCPIO_CONF)):
        return "mkinitcpio"
    if _has_binary(root, "update-initramfs") or os.path.isdir(os.path.join(root, "etc/initramfs-tools")):
        return "initramfs-tools"
    raise InitramfsError(
        "no initramfs generator found under %s (looked for dracut, mkinitcpio, update-initramfs): "
        "set initramfs to the one in use, or to none when the host boots without an initramfs" % root)


def kernel_versions(root):
    """Installed kernels (``lib/modules/<version>``), else the running one (``osrelease``)."""
    try:
        names = sorted(os.listdir(os.path.join(root, "lib/modules")))
    except OSError:
        names = []
    versions = [n for n in names if KERNEL_VERSION_RE.match(n)]
    if versions:
        return versions
    try:
        with open(os.path.join(root, "proc/sys/kernel/osrelease")) as handle:
            running = handle.read().strip()
    except (IOError, OSError):
        running = ""
    return [running] if KERNEL_VERSION_RE.match(running) else []


def needs_virqfd(versions):
    """Whether any of these kernels still has vfio_virqfd as its own module (before 6.2).

    Every image is rebuilt (``-k all``, ``--regenerate-all``, ``-P``), so one old kernel is enough.
    """
    for version in versions:
        match = KERNEL_VERSION_RE.match(version)
        if match and (int(match.group(1)), int(match.group(2))) < VIRQFD_MERGED:
            return True
    return False


def vfio_modules(versions):
    return list(VFIO_MODULES) + ([VIRQFD] if needs_virqfd(versions) else [])


def config_path(root, tool):
    relative = {"initramfs-tools": INITRAMFS_TOOLS_MODULES, "dracut": DRACUT_CONF,
                "mkinitcpio": MKINITCPIO_CONF}[tool]
    return os.path.join(root, relative)


def _strip_block(text):
    """``text`` without our BEGIN..END block (and the block's lines)."""
    lines = text.splitlines(True)
    out = []
    inside = False
    for line in lines:
        stripped = line.rstrip("\r\n")
        if stripped == BEGIN:
            inside = True
            continue
        if inside:
            if stripped == END:
                inside = False
            continue
        out.append(line)
    if inside:
        raise InitramfsError("'%s' has no matching '%s'; fix the file by hand" % (BEGIN, END))
    return "".join(out)


def render_initramfs_tools(current, modules):
    """/etc/initramfs-tools/modules with our block at the end (None modules: block removed).

    Everything outside the block stays byte for byte; an existing block is replaced where it is.
    """
    text = current or ""
    block = "".join(line + "\n" for line in [BEGIN] + list(modules or []) + [END])
    if BEGIN in text.splitlines():
        if modules is None:
            return _strip_block(text)
        lines = text.splitlines(True)
        start = [i for i, line in enumerate(lines) if line.rstrip("\r\n") == BEGIN][0]
        kept = _strip_block(text).splitlines(True)
        return "".join(kept[:start]) + block + "".join(kept[start:])
    if modules is None:
        return current
    if text and not text.endswith("\n"):
        text += "\n"
    return text + block


def render_dracut(modules):
    """Our whole dracut.conf.d file (None: the file should not exist).

    force_drivers (not add_drivers): dracut then also modprobes them early in the initramfs.
    The spaces inside the quotes are dracut's rule for += values.
    """
    if modules is None:
        return None
    return '%s\nforce_drivers+=" %s "\n' % (HEADER, " ".join(modules))


def render_mkinitcpio(current, modules, remove):
    """mkinitcpio.conf with ``modules`` first in MODULES=(...) (or ``remove`` taken out).

    Only a one-line MODULES=(...) is edited; anything else is refused rather than guessed at.
    """
    if current is None:
        raise InitramfsError("mkinitcpio is in use but %s does not exist" % MKINITCPIO_CONF)
    lines = current.splitlines(True)
    found = [i for i, line in enumerate(lines) if re.match(r"^\s*MODULES=", line)]
    if not found:
        if modules is None:
            return current
        sep = "" if not current or current.endswith("\n") else "\n"
        return current + sep + "MODULES=(%s)\n" % " ".join(modules)
    if len(found) > 1:
        raise InitramfsError("%s sets MODULES more than once; edit it by hand" % MKINITCPIO_CONF)
    index = found[0]
    ending = lines[index][len(lines[index].rstrip("\r\n")):]
    match = MKINITCPIO_MODULES_RE.match(lines[index].rstrip("\r\n"))
    if not match:
        raise InitramfsError("MODULES in %s is not a one-line MODULES=(...); edit it by hand"
                             % MKINITCPIO_CONF)
    words = match.group("body").split()
    if modules is None:
        new_words = [w for w in words if w not in remove]
    else:
        new_words = [m for m in modules if m not in words] + words
    if new_words == words:
        return current
    lines[index] = match.group("head") + " ".join(new_words) + match.group("tail") + ending
    return "".join(lines)


def plan(changes, root, tool, modules):
    """Record in ``changes`` (a _files.FileChanges) what ``tool``'s config should hold.

    ``modules`` None means: take our modules out again.
    """
    if tool == "none":
        return
    path = config_path(root, tool)
    if tool == "initramfs-tools":
        changes.want(path, render_initramfs_tools(_files.read_text(path), modules))
    elif tool == "dracut":
        changes.want(path, render_dracut(modules))
    else:
        changes.want(path, render_mkinitcpio(_files.read_text(path), modules,
                                             list(VFIO_MODULES) + [VIRQFD]))


def rebuild_argv(tool):
    return list(REBUILD[tool]) if tool in REBUILD else None
