# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Kernel arguments through whichever bootloader a host uses: detect, plan, apply.

``plan_kernel_args(root, args, state, bootloader, query)`` reads what is configured and returns a
``Plan``: the file edits (a ``_files.FileChanges``), the commands that regenerate the boot
configuration, and the command lines before and after. ``apply_plan(plan, run, live)`` writes the
files, runs the commands through the injected ``run(argv) -> (rc, stdout, stderr)`` and, if one
fails, puts every file back byte for byte. Nothing here runs a process or talks to Ansible:
commands are argv lists whose first item is a program name the caller resolves.
"""

from __future__ import absolute_import, division, print_function

import glob
import json
import os

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _cmdline, _files, _grub

__metaclass__ = type

BOOTLOADERS = ("grub", "systemd_boot", "proxmox_boot_tool", "grubby", "kernelstub")
BIN_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
ESP_DIRS = ("efi", "boot", "boot/efi")  # where bootctl and kernel-install look for the ESP
GRUB_DEFAULTS = "etc/default/grub"
KERNEL_CMDLINE = "etc/kernel/cmdline"
PROXMOX_UUIDS = "etc/kernel/proxmox-boot-uuids"
KERNELSTUB_CONFIG = "etc/kernelstub/configuration"
# Arguments the boot loader itself adds; kernel-install would not want them in /etc/kernel/cmdline.
LOADER_ADDED = ("BOOT_IMAGE", "initrd")


class BootloaderError(Exception):
    """Kernel arguments that cannot be planned or applied, with the reason."""


def _under(root, rel):
    return os.path.join(root, rel.lstrip("/"))


def _read(root, rel):
    try:
        return _files.read_text(_under(root, rel))
    except _files.FileError as exc:
        raise BootloaderError(str(exc))


def find_program(root, *names):
    """The first of ``names`` installed under ``root`` (in the usual bin dirs), or None."""
    for name in names:
        for directory in BIN_DIRS:
            if os.path.isfile(os.path.join(root, directory, name)):
                return name
    return None


def _systemd_boot_esp(root):
    for esp in ESP_DIRS:
        if glob.glob(os.path.join(root, esp, "EFI", "systemd", "systemd-boot*.efi")):
            return "/" + esp
    return None


def detect(root):
    """Which bootloader manages kernel arguments under ``root``; BootloaderError if unclear.

    Most specific first: a Proxmox ESP sync list, kernelstub's config (Pop!_OS), BLS entries with
    grubby (Fedora/RHEL), systemd-boot on an ESP, then GRUB's defaults file.
    """
    if os.path.exists(_under(root, PROXMOX_UUIDS)):
        return "proxmox_boot_tool"
    if os.path.exists(_under(root, KERNELSTUB_CONFIG)):
        return "kernelstub"
    if glob.glob(os.path.join(root, "boot", "loader", "entries", "*.conf")) and find_program(root, "grubby"):
        return "grubby"
    esp = _systemd_boot_esp(root)
    has_grub = os.path.exists(_under(root, GRUB_DEFAULTS))
    if esp:
        if os.path.exists(_under(root, KERNEL_CMDLINE)) or not has_grub:
            return "systemd_boot"
        raise BootloaderError(
            "both systemd-boot (on the ESP at %s) and GRUB (/etc/default/grub) are installed and "
            "/etc/kernel/cmdline does not exist: set bootloader to grub or systemd_boot" % esp)
    if has_grub or find_program(root, "update-grub", "grub2-mkconfig", "grub-mkconfig"):
        return "grub"
    raise BootloaderError(
        "no supported bootloader found under %s (looked for /etc/kernel/proxmox-boot-uuids, "
        "/etc/kernelstub/configuration, /boot/loader/entries with grubby, systemd-boot on the ESP, "
        "/etc/default/grub): set bootloader" % root)


class Plan(object):
    """What a change of kernel arguments takes; see the module docs for each field."""

    def __init__(self, root, bootloader, args, state):
        self.root = root
        self.bootloader = bootloader
        self.args = list(args)
        self.state = state
        self.files = _files.FileChanges()
        self.commands = []       # run after the files are written (regeneration)
        self.edit_commands = []  # grubby/kernelstub: the edit itself is a command
        self.extra_commands = []  # callers' own follow-ups (systemctl), added only when needed
        self.boot_paths = set()   # files the bootloader reads; the others do not need regeneration
        self.live = False
        # A run killed between writing the files and the end of regeneration leaves a marker
        # (_files.Pending): then regeneration is due although the files are already as asked.
        self.pending = None
        self.resume = False
        self.cmdline_current = None
        self.cmdline_next = ""

    @property
    def changed(self):
        return self.files.changed or bool(self.edit_commands) or self.resume

    @property
    def all_commands(self):
        """Every command to run, in order; regeneration only when a boot file or entry changes."""
        boot_changed = (bool(self.edit_commands) or self.resume
                        or any(p in self.boot_paths for p in self.files.changed_paths))
        return self.edit_commands + (self.commands if boot_changed else []) + self.extra_commands

    @property
    def reboot_required(self):
        """Whether the running kernel's command line differs from what is asked."""
        return not satisfied(self.cmdline_current or "", self.args, self.state)

    def diff(self):
        return self.files.diff(display_root=self.root)


def satisfied(cmdline, args, state):
    """Whether ``cmdline`` already has ``args`` (present) or none of them (absent)."""
    tokens = _cmdline.split(cmdline)
    if _cmdline.INIT_SEPARATOR in tokens:  # what follows goes to init, not the kernel
        tokens = tokens[:tokens.index(_cmdline.INIT_SEPARATOR)]
    current = [(_cmdline.param_key(k), v) for k, v in (_cmdline.key_value(token) for token in tokens)]
    for arg in args:
        key, value = _cmdline.key_value(arg)
        key = _cmdline.param_key(key)
        if state == "present":
            # the last value of a key is the one the kernel uses
            values = [v for k, v in current if k == key]
            if not values or values[-1] != value:
                return False
        elif any(k == key and (value is None or v == value) for k, v in current):
            return False
    return True


def read_cmdline(root):
    text = _read(root, "proc/cmdline")
    return text.strip() if text is not None else None


def plan_kernel_args(root, args, state="present", bootloader="auto", query=None, live=None):
    """A ``Plan`` for ``args`` present/absent; reads only.

    ``query(argv) -> stdout`` asks grubby on a live root (``live`` defaults to ``_argspec.root_is_live(root)``).
    """
    try:
        _cmdline.validate(args)
    except _cmdline.CmdlineError as exc:
        raise BootloaderError(str(exc))
    if state not in ("present", "absent"):
        raise BootloaderError("state must be present or absent, not %r" % (state,))
    if bootloader == "auto":
        bootloader = detect(root)
    if bootloader not in BOOTLOADERS:
        raise BootloaderError("unknown bootloader %r; one of: auto, %s" % (bootloader, ", ".join(BOOTLOADERS)))
    plan = Plan(root, bootloader, args, state)
    plan.live = _argspec.root_is_live(root) if live is None else live
    plan.cmdline_current = read_cmdline(root)
    try:
        PLANNERS[bootloader](plan, query)
        plan.boot_paths = set(plan.files.after)
        plan.pending = _files.Pending(root, "bootloader-%s" % bootloader)
        plan.resume = plan.live and bool(plan.commands) and plan.pending.due
    except (_grub.GrubError, _cmdline.CmdlineError, _files.FileError) as exc:
        raise BootloaderError(str(exc))
    return plan


def _grub_files(root):
    paths = [_under(root, GRUB_DEFAULTS)] + sorted(glob.glob(os.path.join(root, "etc", "default", "grub.d", "*.cfg")))
    return [(path, _files.read_text(path) or "") for path in paths]


def _plan_grub_files(plan):
    files = _grub_files(plan.root)
    texts = _grub.edit(files, plan.args, plan.state)
    for (path, before), after in zip(files, texts):
        if after != before:
            plan.files.want(path, after)
    plan.cmdline_next = _grub.configured([(path, text) for (path, _old), text in zip(files, texts)])


def grub_regenerate(root):
    """The distro's command that rewrites grub.cfg from the defaults."""
    if find_program(root, "update-grub"):  # Debian, Ubuntu, Proxmox
        return ["update-grub"]
    program = find_program(root, "grub2-mkconfig", "grub-mkconfig")
    if not program:
        raise BootloaderError("GRUB: none of update-grub, grub2-mkconfig, grub-mkconfig is installed under %s" % root)
    # Fedora/RHEL/SUSE keep grub.cfg in /boot/grub2 (on EFI too since Fedora 34/RHEL 9), Arch in /boot/grub.
    output = "/boot/grub2/grub.cfg" if program == "grub2-mkconfig" else "/boot/grub/grub.cfg"
    return [program, "-o", output]


def _plan_grub(plan, _query):
    _plan_grub_files(plan)
    plan.commands = [grub_regenerate(plan.root)]


def _seed_kernel_cmdline(root):
    """What kernel-install uses when /etc/kernel/cmdline is missing (systemd 252 and later)."""
    text = _read(root, "usr/lib/kernel/cmdline")
    if text is None:
        text = read_cmdline(root) or ""
        text = " ".join(t for t in _cmdline.split(text) if _cmdline.key_value(t)[0] not in LOADER_ADDED)
    return text.strip() + "\n"


def _plan_kernel_cmdline(plan):
    path = _under(plan.root, KERNEL_CMDLINE)
    before = _files.read_text(path)
    text = before if before is not None else _seed_kernel_cmdline(plan.root)
    # The file is one line; edit the text of that line and keep its ending.
    body = text.rstrip("\r\n")
    after = _cmdline.edit(body, plan.args, plan.state) + text[len(body):]
    if after != before:
        plan.files.want(path, after)
    plan.cmdline_next = after.strip()


def installed_kernels(root):
    """``[(version, image path)]`` of the kernels kernel-install should (re)install."""
    kernels = []
    for modules in sorted(glob.glob(os.path.join(root, "lib", "modules", "*"))):
        version = os.path.basename(modules)
        for image in ("/boot/vmlinuz-%s" % version, "/lib/modules/%s/vmlinuz" % version):
            if os.path.isfile(_under(root, image)):
                kernels.append((version, image))
                break
    return kernels


def _plan_systemd_boot(plan, _query):
    _plan_kernel_cmdline(plan)
    if not find_program(plan.root, "kernel-install"):
        raise BootloaderError("systemd-boot: kernel-install is not installed under %s" % plan.root)
    kernels = installed_kernels(plan.root)
    if not kernels:
        raise BootloaderError("systemd-boot: no kernel image found for any /lib/modules/<version> under %s" % plan.root)
    # What Debian's /etc/kernel/postinst.d/zz-systemd-boot runs for each kernel; kernel-install
    # reads /etc/kernel/cmdline and writes the loader entry (its initrd plugin finds the initrd).
    plan.commands = [["kernel-install", "add", version, image] for version, image in kernels]


def _plan_proxmox(plan, _query):
    if os.path.exists(_under(plan.root, KERNEL_CMDLINE)):
        _plan_kernel_cmdline(plan)  # systemd-boot ESPs
    else:
        _plan_grub_files(plan)      # GRUB ESPs
    if not find_program(plan.root, "proxmox-boot-tool"):
        raise BootloaderError("proxmox-boot-tool is not installed under %s" % plan.root)
    plan.commands = [["proxmox-boot-tool", "refresh"]]


def parse_grubby_info(text):
    """``[{'kernel': ..., 'args': ...}]`` from ``grubby --info=ALL`` (``key="value"`` lines)."""
    entries = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "index":
            entries.append({})
        elif entries and key in ("kernel", "args"):
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            entries[-1][key] = value
    return [e for e in entries if "kernel" in e]


def _bls_entries_as_info(root):
    """Off-host (root other than /): the ``options`` of each BLS entry, grubby-info style."""
    lines = []
    for index, path in enumerate(sorted(glob.glob(os.path.join(root, "boot", "loader", "entries", "*.conf")))):
        fields = {}
        for line in (_files.read_text(path) or "").splitlines():
            key, _sep, value = line.strip().partition(" ")
            fields[key] = value.strip()
        lines += ["index=%d" % index, 'kernel="%s"' % fields.get("linux", path),
                  'args="%s"' % fields.get("options", "")]
    return "\n".join(lines)


def _plan_grubby(plan, query):
    if plan.live:
        if query is None:
            raise BootloaderError("grubby: no way to run grubby --info=ALL")
        text = query(["grubby", "--info=ALL"])
    else:
        text = _bls_entries_as_info(plan.root)
    entries = parse_grubby_info(text)
    if not entries:
        raise BootloaderError("grubby lists no boot entries")
    add, remove = [], []
    for arg in plan.args:
        if plan.state == "present":
            if any(not satisfied(e.get("args", ""), [arg], "present") for e in entries):
                add.append(arg)
        elif any(not satisfied(e.get("args", ""), [arg], "absent") for e in entries):
            remove.append(arg)
    command = ["grubby", "--update-kernel=ALL"]
    if add:
        command.append("--args=%s" % " ".join(add))
    if remove:
        command.append("--remove-args=%s" % " ".join(remove))
    if add or remove:
        plan.edit_commands = [command]
    # grubby lists the default entry first on BLS systems; that is the next boot's command line.
    plan.cmdline_next = _cmdline.edit(entries[0].get("args", ""), plan.args, plan.state)


def _plan_kernelstub(plan, _query):
    text = _read(plan.root, KERNELSTUB_CONFIG)
    try:
        options = json.loads(text or "{}")["user"]["kernel_options"]
    except (ValueError, KeyError, TypeError):
        raise BootloaderError("/etc/kernelstub/configuration has no user.kernel_options list")
    if not isinstance(options, list):
        raise BootloaderError("/etc/kernelstub/configuration: user.kernel_options is not a list")
    after = _cmdline.split(_cmdline.edit(" ".join(options), plan.args, plan.state))
    # kernelstub only adds and deletes whole options: delete what goes (conflicting values too),
    # then add what is new.
    delete = [o for o in options if o not in after]
    add = [o for o in after if o not in options]
    if delete:
        plan.edit_commands.append(["kernelstub", "--delete-options", " ".join(delete)])
    if add:
        plan.edit_commands.append(["kernelstub", "--add-options", " ".join(add)])
    plan.cmdline_next = " ".join(after)


PLANNERS = {
    "grub": _plan_grub,
    "systemd_boot": _plan_systemd_boot,
    "proxmox_boot_tool": _plan_proxmox,
    "grubby": _plan_grubby,
    "kernelstub": _plan_kernelstub,
}


def apply_plan(plan, run, live=True, check_mode=False):
    """Write the plan's files and run its commands; ``{'commands': [...], 'commands_skipped': [...]}``.

    ``live`` false (root is not /): files are written under root, commands are only reported.
    grubby and kernelstub keep the arguments where only they can edit them, so they need a live root.
    ``check_mode``: the same answer, nothing written or run.
    If a command fails, every written file is put back and BootloaderError carries its stderr.
    """
    commands = plan.all_commands
    if not live and plan.edit_commands:
        raise BootloaderError("%s edits boot entries only on the running host: use root=/ to change them"
                              % plan.bootloader)
    if check_mode:
        return {"commands": commands if live else [], "commands_skipped": [] if live else commands}
    # The marker goes down before the first write and comes off once regeneration succeeded; after
    # a failure it stays only if an earlier interrupted run left it (its files are still unused).
    pending = plan.pending if live and plan.pending is not None and any(c in plan.commands for c in commands) else None
    was_due = pending is not None and pending.due
    try:
        if pending is not None:
            pending.mark(commands, plan.files.changed_paths)
        plan.files.apply()
    except _files.FileError as exc:
        if pending is not None and not was_due:
            pending.clear()
        raise BootloaderError(str(exc))
    if not live:
        return {"commands": [], "commands_skipped": commands}
    done = []
    for argv in commands:
        rc, _out, err = run(argv)
        if rc != 0:
            edited = plan.files.changed_paths
            restored = "restored %s byte for byte" % ", ".join(edited) if edited else "no file was edited"
            try:
                plan.files.restore()
                if pending is not None and not was_due:
                    pending.clear()
            except _files.FileError as exc:
                restored = "restoring the edited files failed too: %s" % exc
            raise BootloaderError("%s failed (rc %d); %s: %s" % (" ".join(argv), rc, restored, (err or "").strip()))
        done.append(argv)
    if pending is not None:
        try:
            pending.clear()
        except _files.FileError as exc:
            raise BootloaderError(str(exc))
    return {"commands": done, "commands_skipped": []}


# IOMMU arguments, for iommu_kernel_args and the roles.
IOMMU_ARGS = {"intel": ["intel_iommu=on", "iommu=pt"], "amd": ["amd_iommu=on", "iommu=pt"], "none": []}
CPU_VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
WEAK_ISOLATION = {
    "pcie_acs_override": "pcie_acs_override makes the kernel split IOMMU groups the hardware does not "
                         "isolate: devices in a 'separate' group may still reach each other's memory",
    "vfio_iommu_type1.allow_unsafe_interrupts": "vfio_iommu_type1.allow_unsafe_interrupts lets a guest "
                                                "inject interrupts without interrupt remapping",
}


def cpu_vendor(root):
    """``intel`` or ``amd`` from ``<root>/proc/cpuinfo``; BootloaderError otherwise."""
    text = _read(root, "proc/cpuinfo")
    if text is None:
        raise BootloaderError("cannot read %s to pick the IOMMU arguments: set iommu to intel, amd or none"
                              % _under(root, "proc/cpuinfo"))
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        if key.strip() == "vendor_id":
            vendor = CPU_VENDORS.get(value.strip())
            if vendor:
                return vendor
            raise BootloaderError("CPU vendor %r is neither GenuineIntel nor AuthenticAMD: set iommu to "
                                  "intel, amd or none" % value.strip())
    raise BootloaderError("no vendor_id in /proc/cpuinfo: set iommu to intel, amd or none")


def iommu_vendor(root):
    """``intel`` or ``amd``: the IOMMU the platform has, else the CPU's vendor.

    The IOMMU itself decides which argument works: running IOMMU units (dmar*: VT-d, ivhd*:
    AMD-Vi), else the firmware's ACPI table describing it (DMAR, IVRS; present while the kernel
    still has the IOMMU off). The CPU vendor is the last resort: in VMs it can differ (QEMU's
    ``-cpu max`` says AuthenticAMD next to an emulated Intel IOMMU, as in the lab).
    """
    units = [os.path.basename(p) for p in glob.glob(os.path.join(root, "sys", "class", "iommu", "*"))]
    if any(u.startswith("dmar") for u in units):
        return "intel"
    if any(u.startswith("ivhd") for u in units):
        return "amd"
    tables = os.path.join(root, "sys", "firmware", "acpi", "tables")
    if os.path.exists(os.path.join(tables, "DMAR")):
        return "intel"
    if os.path.exists(os.path.join(tables, "IVRS")):
        return "amd"
    return cpu_vendor(root)


def merge_iommu_args(root, args, iommu, state):
    """``args`` plus the IOMMU arguments ``iommu`` stands for; ``args`` win on a shared key.

    ``iommu`` None means ``auto`` when adding and ``none`` when removing, so removing some
    argument never turns the IOMMU off by surprise.
    """
    if iommu is None:
        iommu = "auto" if state == "present" else "none"
    given = iommu
    if iommu == "auto":
        iommu = iommu_vendor(root)
    if iommu not in IOMMU_ARGS:
        raise BootloaderError("iommu must be auto, intel, amd or none, not %r" % (iommu,))
    try:
        _cmdline.validate(args)
    except _cmdline.CmdlineError as exc:
        raise BootloaderError(str(exc))
    off = [a for a in args if _cmdline.key_value(a) in (("intel_iommu", "off"), ("amd_iommu", "off"), ("iommu", "off"))]
    if state == "present" and iommu != "none" and off:
        # Each would win over the IOMMU argument it replaces: the run would turn off what it asks for.
        raise BootloaderError("args has %s, which turns off the %s IOMMU that iommu=%s asks for: set iommu to none "
                              "to turn the IOMMU off, or drop %s" % (" ".join(off), iommu, given, " ".join(off)))
    keys = set(_cmdline.param_key(_cmdline.key_value(a)[0]) for a in args)
    return [a for a in IOMMU_ARGS[iommu] if _cmdline.param_key(_cmdline.key_value(a)[0]) not in keys] + list(args)


def isolation_warnings(args, state):
    if state != "present":
        return []
    keys = set(_cmdline.param_key(_cmdline.key_value(a)[0]) for a in args)
    return [WEAK_ISOLATION[k] for k in sorted(WEAK_ISOLATION) if _cmdline.param_key(k) in keys]


def plan_result(plan, applied):
    """The result keys every module that changes kernel arguments returns."""
    return {
        "bootloader": plan.bootloader,
        "args": plan.args,
        "cmdline_current": plan.cmdline_current,
        "cmdline_next": plan.cmdline_next,
        "reboot_required": plan.reboot_required,
        "commands": applied["commands"],
        "commands_skipped": applied["commands_skipped"],
    }


def module_runner(module, live):
    """``(run, query)`` for a plan, running through ``module`` (an AnsibleModule, duck-typed).

    Programs are resolved up front (``resolve``) so a missing one fails before any file is written.
    """
    def run(argv):
        return module.run_command([module.get_bin_path(argv[0], required=True)] + list(argv[1:]),
                                  environ_update={"LC_ALL": "C"})

    def query(argv):
        rc, out, err = run(argv)
        if rc != 0:
            raise BootloaderError("%s failed (rc %d): %s" % (" ".join(argv), rc, err.strip()))
        return out

    def resolve(plan):
        if live:
            for argv in plan.all_commands:
                module.get_bin_path(argv[0], required=True)

    return run, query, resolve
