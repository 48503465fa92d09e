# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Huge pages: validate a request, allocate at runtime, and plan what makes it persistent.

Runtime: ``nr_hugepages`` per NUMA node (``/sys/devices/system/node/node<N>/hugepages/...``) or
for the whole host (``/sys/kernel/mm/hugepages/...``). The kernel gives what it can find in one
piece; on a shortfall caches are dropped and memory compacted, then the write is retried a
bounded number of times and what the kernel actually gave is re-read.

Persistent: 2M pages host-wide through a sysctl.d file owned by this module (``vm.nr_hugepages``,
applied by systemd-sysctl early in boot); 1G pages, and any per-node request, through kernel
arguments (``_bootloader``), because 1G pages must be taken at boot before memory fragments and
sysctl has no per-node setting.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import re

from ansible_collections.passthrough.gpu.plugins.module_utils import _bootloader, _cmdline, _files

__metaclass__ = type

SIZES_KB = {"2M": 2048, "1G": 1048576}
SYSCTL_FILE = "etc/sysctl.d/80-passthrough-gpu-hugepages.conf"
MANAGED = "# Managed by passthrough.gpu.hugepages; changes here are overwritten.\n"
MEMORY_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
RETRIES = 3
# Directories a hugetlbfs must never cover: mounting there hides what the host boots and runs from.
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/efi", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt", "/opt",
               "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var")
# ... nor anything below these (kernel file systems, the boot files, the read-only OS).
SYSTEM_TREES = ("/boot/", "/efi/", "/etc/", "/proc/", "/sys/", "/usr/")


class HugepagesError(Exception):
    """A huge page request that cannot be met or planned, with the reason."""


def _under(root, rel):
    return os.path.join(root, rel.lstrip("/"))


def human(kb):
    """``1.9 GiB`` style, for messages."""
    for unit, factor in (("TiB", 1 << 30), ("GiB", 1 << 20), ("MiB", 1 << 10)):
        if kb >= factor:
            return ("%.1f %s" % (float(kb) / factor, unit)).replace(".0 ", " ")
    return "%d KiB" % kb


def parse_memory(text):
    """Bytes in ``16G``, ``512M``, ``1GiB``; binary units."""
    match = MEMORY_RE.match(str(text))
    if not match:
        raise HugepagesError("memory %r is not a size like 16G, 512M or 1GiB" % (text,))
    return int(match.group(1)) * UNITS[match.group(2).upper()]


def page_count(size, count=None, memory=None):
    """Pages of ``size`` for ``count`` or ``memory`` (which must be a whole number of pages)."""
    if (count is None) == (memory is None):
        raise HugepagesError("give one of count or memory")
    if count is not None:
        if count < 0:
            raise HugepagesError("count must not be negative")
        return count
    size_bytes = SIZES_KB[size] * 1024
    total = parse_memory(memory)
    if total % size_bytes:
        raise HugepagesError("memory %s is not a whole number of %s pages" % (memory, size))
    return total // size_bytes


def read_meminfo(text):
    """``{field: kB}`` from /proc/meminfo or a node's meminfo (``Node 0 MemTotal: ... kB``)."""
    values = {}
    for line in (text or "").splitlines():
        key, _sep, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[key.split()[-1]] = int(fields[0])
    return values


def _read(path):
    try:
        return _files.read_text(path)
    except _files.FileError as exc:
        raise HugepagesError(str(exc))


def numa_nodes(root):
    """NUMA node numbers the kernel shows, [] without /sys/devices/system/node."""
    nodes = []
    for path in glob.glob(_under(root, "sys/devices/system/node/node*")):
        suffix = os.path.basename(path)[4:]
        if suffix.isdigit():
            nodes.append(int(suffix))
    return sorted(nodes)


def targets(root, size, nodes):
    """``{label: nr_hugepages path}``: one per node, or ``all`` for the host."""
    kb = SIZES_KB[size]
    if nodes:
        return dict(("node%d" % n, _under(root, "sys/devices/system/node/node%d/hugepages/hugepages-%dkB/nr_hugepages" % (n, kb)))
                    for n in nodes)
    return {"all": _under(root, "sys/kernel/mm/hugepages/hugepages-%dkB/nr_hugepages" % kb)}


def validate(root, size, count, nodes):
    """Refuse a request the host cannot hold, before anything is written."""
    if size not in SIZES_KB:
        raise HugepagesError("size must be one of %s" % ", ".join(sorted(SIZES_KB)))
    cpuinfo = _read(_under(root, "proc/cpuinfo")) or ""
    flags = [line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")]
    if size == "1G" and flags and "pdpe1gb" not in flags[0]:
        raise HugepagesError("this CPU has no 1G pages (no pdpe1gb flag in /proc/cpuinfo): use size 2M")
    known = numa_nodes(root)
    twice = sorted(set(n for n in nodes or [] if list(nodes).count(n) > 1))
    if twice:
        # hugepages=0:N,0:N would reserve on the node twice in the check below but once at boot.
        raise HugepagesError("nodes lists NUMA node %s more than once" % ", ".join(str(n) for n in twice))
    for node in nodes or []:
        if node not in known:
            raise HugepagesError("NUMA node %d does not exist (nodes: %s)"
                                 % (node, ", ".join(str(n) for n in known) or "none"))
    total = read_meminfo(_read(_under(root, "proc/meminfo"))).get("MemTotal")
    if total is None:
        raise HugepagesError("cannot read MemTotal from %s" % _under(root, "proc/meminfo"))
    kb = SIZES_KB[size]
    asked = count * kb * max(1, len(nodes or []))
    if asked > total:
        raise HugepagesError("asked for %s of huge pages (%d x %s%s) but this host has %s of memory (MemTotal %d kB)"
                             % (human(asked), count, size, " on each of %d nodes" % len(nodes) if nodes else "",
                                human(total), total))
    for node in nodes or []:
        node_total = read_meminfo(_read(_under(root, "sys/devices/system/node/node%d/meminfo" % node))).get("MemTotal")
        if node_total is not None and count * kb > node_total:
            raise HugepagesError("asked for %s of huge pages on NUMA node %d but it has %s (MemTotal %d kB)"
                                 % (human(count * kb), node, human(node_total), node_total))


def read_count(path):
    text = _read(path)
    if text is None or not text.strip().isdigit():
        raise HugepagesError("cannot read a page count from %s (does the kernel offer this page size?)" % path)
    return int(text.strip())


def _write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def allocate(root, wanted, write=None, retries=RETRIES):
    """Ask the kernel for ``wanted`` (``{label: (path, count)}``); ``{label: pages it gave}``.

    ``write(path, text)`` writes a kernel file (injected by tests).
    """
    write = write or _write
    got = {}
    for attempt in range(retries + 1):
        for label, (path, count) in sorted(wanted.items()):
            if got.get(label) != count:
                try:
                    write(path, "%d\n" % count)
                except (IOError, OSError) as exc:
                    # The kernel answers ENOMEM etc. when it cannot give all; the re-read says how many.
                    if not os.path.exists(path):
                        raise HugepagesError("cannot write %s: %s" % (path, exc))
                got[label] = read_count(path)
        if all(got[label] == count for label, (_path, count) in wanted.items()) or attempt == retries:
            break
        relieve(root, write)
    return got


def relieve(root, write):
    """Free page cache and defragment, so contiguous pages exist for the next try."""
    for rel, value in (("proc/sys/vm/drop_caches", "3\n"), ("proc/sys/vm/compact_memory", "1\n")):
        path = _under(root, rel)
        if os.path.exists(path):
            try:
                write(path, value)
            except (IOError, OSError):
                pass  # best effort: a failed hint only means fewer pages, which is reported


def kernel_args(size, count, nodes):
    """Boot arguments that reserve the pages; node-local as ``hugepages=0:N,1:N`` (Linux 5.7+)."""
    pages = ",".join("%d:%d" % (n, count) for n in nodes) if nodes else str(count)
    args = ["hugepagesz=%s" % size, "hugepages=%s" % pages]
    if size == "1G":
        # 1G the default size, so /dev/hugepages and libvirt's default <hugepages/> use it.
        args.insert(0, "default_hugepagesz=1G")
    return args


def sysctl_text(count):
    return MANAGED + "vm.nr_hugepages = %d\n" % count


def default_size_kb(root):
    return read_meminfo(_read(_under(root, "proc/meminfo"))).get("Hugepagesize")


def mount_unit_name(path):
    """systemd's escaping of a mount point into a unit name (``systemd-escape --path --suffix=mount``)."""
    trimmed = "/".join(p for p in path.split("/") if p)
    if not trimmed:
        return "-.mount"
    out = []
    for index, char in enumerate(trimmed):
        if char == "/":
            out.append("-")
        elif char.isalnum() and ord(char) < 128 or char in ":_" or (char == "." and index > 0):
            out.append(char)
        else:
            out.append("\\x%02x" % ord(char))
    return "".join(out) + ".mount"


def mount_unit_text(path, size):
    return MANAGED + (
        "[Unit]\n"
        "Description=hugetlbfs with %(size)s pages at %(path)s\n"
        "DefaultDependencies=no\n"
        "Before=sysinit.target\n"
        "ConditionPathExists=/sys/kernel/mm/hugepages/hugepages-%(kb)dkB\n"
        "\n"
        "[Mount]\n"
        "What=hugetlbfs\n"
        "Where=%(path)s\n"
        "Type=hugetlbfs\n"
        "Options=pagesize=%(size)s\n"
        "\n"
        "[Install]\n"
        "WantedBy=sysinit.target\n") % {"size": size, "path": path, "kb": SIZES_KB[size]}


def validate_mount_path(path):
    if not path.startswith("/") or re.search(r"\s", path) or "/../" in path + "/" or path.rstrip("/") == "":
        raise HugepagesError("mount_path must be an absolute path without white space or '..', not %r" % (path,))
    path = "/" + "/".join(p for p in path.split("/") if p)
    if path in SYSTEM_DIRS or path.startswith(SYSTEM_TREES):
        raise HugepagesError("mount_path %s is a system directory: a hugetlbfs mounted there would hide what it "
                             "holds; use a path of its own like /dev/hugepages1G" % path)
    return path


def _check_mount_target(root, unit_path, mount_path):
    """Refuse to replace a mount unit this module did not write, or to cover a directory's files."""
    text = _read(unit_path)
    if text is not None and not text.startswith(MANAGED):
        raise HugepagesError("/%s exists and was not written by passthrough.gpu.hugepages: not replacing "
                             "another mount of %s; choose another mount_path" % (os.path.relpath(unit_path, root), mount_path))
    where = _under(root, mount_path)
    if text is None and os.path.isdir(where) and os.listdir(where):
        raise HugepagesError("mount_path %s is a directory that is not empty: a hugetlbfs mounted there would "
                             "hide its files; choose an empty or new directory" % mount_path)


def plan_persistent(root, size, count, nodes, bootloader="auto", query=None, mount_path=None, other_args=()):
    """A ``_bootloader.Plan`` holding every persistent change, for ``_bootloader.apply_plan``.

    The sysctl.d file and the mount unit join the bootloader plan's file changes, so a failed
    regeneration puts them back too; without kernel arguments a plan with no bootloader
    (``Plan.bootloader`` None) carries them. ``other_args`` (host_config's IOMMU arguments) join
    the same plan: one edit and one regeneration for both, where two plans read from the same
    file would each undo the other.
    """
    sysctl_path = _under(root, SYSCTL_FILE)
    ours = kernel_args(size, count, nodes) if size == "1G" or nodes else []
    taken = set(_cmdline.param_key(_cmdline.key_value(a)[0]) for a in kernel_args(size, count, nodes))
    clash = [a for a in other_args if _cmdline.param_key(_cmdline.key_value(a)[0]) in taken]
    if clash:
        raise HugepagesError("the kernel arguments %s are the huge pages' own: set the pages through the huge page "
                             "options, not as kernel arguments" % " ".join(clash))
    if size == "2M" and not nodes and default_size_kb(root) not in (None, SIZES_KB["2M"]):
        raise HugepagesError("the default huge page size here is %d kB, so vm.nr_hugepages would not count "
                             "2M pages: remove default_hugepagesz from the kernel arguments first"
                             % default_size_kb(root))
    args = ours + list(other_args)
    if args:
        try:
            plan = _bootloader.plan_kernel_args(root, args, "present", bootloader, query)
        except _bootloader.BootloaderError as exc:
            raise HugepagesError(str(exc))
    else:
        plan = _bootloader.Plan(root, None, [], "present")
        plan.cmdline_current = _bootloader.read_cmdline(root)
    # With the pages on the kernel command line, a sysctl file of ours would fight them.
    plan.files.want(sysctl_path, None if ours else sysctl_text(count))
    if mount_path:
        unit = mount_unit_name(mount_path)
        _check_mount_target(root, _under(root, "etc/systemd/system/" + unit), mount_path)
        if plan.files.want(_under(root, "etc/systemd/system/" + unit), mount_unit_text(mount_path, size)):
            plan.extra_commands = [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", unit]]
    return plan


def ensure_runtime(root, size, count, nodes, check_mode=False, write=None):
    """``{label: {before, requested, after}}``: the running kernel's pool, changed when it differs.

    In check mode ``after`` is what would be asked for (the kernel may give less).
    """
    paths = targets(root, size, nodes)
    pages = {}
    wanted = {}
    for label, path in paths.items():
        before = read_count(path)
        pages[label] = {"before": before, "requested": count, "after": before}
        if before != count:
            wanted[label] = (path, count)
    if check_mode:
        for label in wanted:
            pages[label]["after"] = count
    elif wanted:
        for label, got in allocate(root, wanted, write).items():
            pages[label]["after"] = got
    return pages


def shortfall(pages, size):
    """A sentence about the pools the kernel did not fill, or None."""
    short = ["%s: %d of %d" % (label, p["after"], p["requested"]) for label, p in sorted(pages.items())
             if p["after"] < p["requested"]]
    if not short:
        return None
    return ("the kernel gave fewer %s huge pages than asked (%s) even after dropping caches and compacting "
            "memory %d times: memory is too fragmented or in use" % (size, ", ".join(short), RETRIES))
