# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import json
import os

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _bootloader

GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
IOMMU = ["intel_iommu=on", "iommu=pt"]
# Recorded from `grubby --info=ALL` on Fedora 39 (BLS), two kernels and the rescue entry.
GRUBBY_INFO = '''index=0
kernel="/boot/vmlinuz-6.5.6-300.fc39.x86_64"
args="ro rootflags=subvol=root rhgb quiet intel_iommu=off"
root="UUID=8a3e0c1b-41c5-4d6a-9d4b-3b1f0e0a5b21"
initrd="/boot/initramfs-6.5.6-300.fc39.x86_64.img"
title="Fedora Linux (6.5.6-300.fc39.x86_64) 39 (Workstation Edition)"
id="5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54-6.5.6-300.fc39.x86_64"
index=1
kernel="/boot/vmlinuz-0-rescue-5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54"
args="ro rootflags=subvol=root rhgb quiet iommu=pt"
root="UUID=8a3e0c1b-41c5-4d6a-9d4b-3b1f0e0a5b21"
initrd="/boot/initramfs-0-rescue-5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54.img"
title="Fedora Linux (0-rescue-5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54) 39 (Workstation Edition)"
id="5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54-0-rescue"
'''
# Pop!_OS 22.04's /etc/kernelstub/configuration
KERNELSTUB = {
    "default": {"kernel_options": ["quiet", "splash"], "esp_path": "/boot/efi", "setup_loader": False,
                "manage_mode": False, "force_update": False, "live_mode": False, "config_rev": 3},
    "user": {"kernel_options": ["quiet", "loglevel=0", "systemd.show_status=false", "splash", "intel_iommu=off"],
             "esp_path": "/boot/efi", "setup_loader": True, "manage_mode": True, "force_update": False,
             "live_mode": False, "config_rev": 3},
}


def program(tree, name, directory="usr/sbin"):
    tree.write("%s/%s" % (directory, name), "#!/bin/sh\n")


def grub_host(tree, text=GRUB, cmdline="BOOT_IMAGE=/vmlinuz ro quiet"):
    tree.write("etc/default/grub", text)
    tree.cmdline(cmdline)
    program(tree, "update-grub")
    return tree


def systemd_boot_host(tree, cmdline_file="root=UUID=1 ro quiet\n"):
    tree.write("boot/efi/EFI/systemd/systemd-bootx64.efi", "")
    if cmdline_file is not None:
        tree.write("etc/kernel/cmdline", cmdline_file)
    tree.write("lib/modules/6.1.0-50-amd64/modules.dep", "")
    tree.write("boot/vmlinuz-6.1.0-50-amd64", "")
    tree.write("lib/modules/6.1.0-40-amd64/modules.dep", "")
    tree.write("boot/vmlinuz-6.1.0-40-amd64", "")
    tree.cmdline("initrd=\\efi\\x.img root=UUID=1 ro quiet")
    program(tree, "kernel-install", "usr/bin")
    return tree


@pytest.mark.parametrize("setup, expected", [
    (grub_host, "grub"),
    (lambda t: program(t, "grub2-mkconfig"), "grub"),
    (systemd_boot_host, "systemd_boot"),
    (lambda t: (systemd_boot_host(t, None), t.write("usr/lib/kernel/cmdline", "x\n")), "systemd_boot"),
    (lambda t: (systemd_boot_host(t), grub_host(t)), "systemd_boot"),  # /etc/kernel/cmdline decides
    (lambda t: (grub_host(t), t.write("etc/kernel/proxmox-boot-uuids", "1234-ABCD\n")), "proxmox_boot_tool"),
    (lambda t: (t.write("boot/loader/entries/x.conf", "linux /vmlinuz\n"), program(t, "grubby"), grub_host(t)), "grubby"),
    (lambda t: t.write("etc/kernelstub/configuration", json.dumps(KERNELSTUB)), "kernelstub"),
])
def test_detect(tree, setup, expected):
    setup(tree)
    assert _bootloader.detect(tree.root) == expected


@pytest.mark.parametrize("setup, message", [
    (lambda t: None, "no supported bootloader found"),
    (lambda t: (systemd_boot_host(t, None), grub_host(t)), "both systemd-boot .* and GRUB"),
    # BLS entries without grubby are not grubby's
    (lambda t: t.write("boot/loader/entries/x.conf", "linux /vmlinuz\n"), "no supported bootloader"),
])
def test_detect_refuses_to_guess(tree, setup, message):
    setup(tree)
    with pytest.raises(_bootloader.BootloaderError, match=message):
        _bootloader.detect(tree.root)


@pytest.mark.parametrize("programs, expected", [
    (["update-grub", "grub-mkconfig"], ["update-grub"]),
    (["grub2-mkconfig"], ["grub2-mkconfig", "-o", "/boot/grub2/grub.cfg"]),
    (["grub-mkconfig"], ["grub-mkconfig", "-o", "/boot/grub/grub.cfg"]),
])
def test_grub_regenerate_by_what_exists(tree, programs, expected):
    for name in programs:
        program(tree, name, "usr/bin")
    assert _bootloader.grub_regenerate(tree.root) == expected


def test_grub_without_a_regenerate_command_is_refused(tree):
    tree.write("etc/default/grub", GRUB)
    with pytest.raises(_bootloader.BootloaderError, match="none of update-grub"):
        _bootloader.plan_kernel_args(tree.root, IOMMU, "present", "grub")


def test_grub_plan(tree):
    grub_host(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    assert plan.bootloader == "grub" and plan.changed
    assert plan.all_commands == [["update-grub"]]
    assert plan.cmdline_next == "quiet intel_iommu=on iommu=pt"
    assert plan.cmdline_current == "BOOT_IMAGE=/vmlinuz ro quiet" and plan.reboot_required
    [entry] = plan.diff()
    assert entry["before_header"] == "/etc/default/grub"
    assert entry["after"] == GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"')


def test_grub_plan_already_there_changes_nothing(tree):
    grub_host(tree, GRUB.replace('"quiet"', '"quiet intel_iommu=on iommu=pt"'),
              "BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt")
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    assert not plan.changed and plan.all_commands == [] and plan.diff() == []
    assert plan.reboot_required is False


@pytest.mark.parametrize("cmdline, args, state, expected", [
    ("ro intel_iommu=on iommu=pt", IOMMU, "present", True),
    ("ro intel_iommu=on", IOMMU, "present", False),
    ("ro intel_iommu=off iommu=pt", IOMMU, "present", False),
    ("ro intel_iommu=off intel_iommu=on iommu=pt", IOMMU, "present", True),  # the last one counts
    ("ro quiet", ["quiet"], "present", True),
    ("ro quiet=1", ["quiet"], "present", False),
    ("ro pcie_acs_override=downstream", ["pcie_acs_override"], "absent", False),
    ("ro pcie_acs_override=downstream", ["pcie_acs_override=multifunction"], "absent", True),
    ("ro", ["pcie_acs_override"], "absent", True),
    ("", IOMMU, "present", False),
])
def test_satisfied(cmdline, args, state, expected):
    assert _bootloader.satisfied(cmdline, args, state) is expected


def test_systemd_boot_plan_edits_kernel_cmdline_and_runs_kernel_install_per_kernel(tree):
    systemd_boot_host(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    assert plan.bootloader == "systemd_boot"
    assert plan.files.after[tree.path("etc/kernel/cmdline")] == "root=UUID=1 ro quiet intel_iommu=on iommu=pt\n"
    assert plan.all_commands == [
        ["kernel-install", "add", "6.1.0-40-amd64", "/boot/vmlinuz-6.1.0-40-amd64"],
        ["kernel-install", "add", "6.1.0-50-amd64", "/boot/vmlinuz-6.1.0-50-amd64"]]
    assert plan.cmdline_next == "root=UUID=1 ro quiet intel_iommu=on iommu=pt"


def test_systemd_boot_without_kernel_cmdline_seeds_it_as_kernel_install_would(tree):
    systemd_boot_host(tree, None)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", "systemd_boot")
    # the loader's own initrd= is not a kernel argument to keep
    assert plan.files.after[tree.path("etc/kernel/cmdline")] == "root=UUID=1 ro quiet intel_iommu=on iommu=pt\n"
    assert plan.diff()[0]["before_header"] == "/etc/kernel/cmdline (absent)"


def test_systemd_boot_image_in_lib_modules(tree):
    tree.write("lib/modules/6.6.1-arch1-1/vmlinuz", "")
    tree.write("etc/kernel/cmdline", "rw\n")
    program(tree, "kernel-install", "usr/bin")
    plan = _bootloader.plan_kernel_args(tree.root, ["iommu=pt"], "present", "systemd_boot")
    assert plan.commands == [["kernel-install", "add", "6.6.1-arch1-1", "/lib/modules/6.6.1-arch1-1/vmlinuz"]]


@pytest.mark.parametrize("kernel_cmdline", [True, False])
def test_proxmox_edits_kernel_cmdline_or_grub_then_refreshes(tree, kernel_cmdline):
    grub_host(tree)
    tree.write("etc/kernel/proxmox-boot-uuids", "1234-ABCD\n")
    program(tree, "proxmox-boot-tool")
    if kernel_cmdline:
        tree.write("etc/kernel/cmdline", "root=ZFS=rpool/ROOT/pve-1 boot=zfs\n")
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    assert plan.bootloader == "proxmox_boot_tool"
    assert plan.all_commands == [["proxmox-boot-tool", "refresh"]]
    edited = "etc/kernel/cmdline" if kernel_cmdline else "etc/default/grub"
    assert list(plan.files.after) == [tree.path(edited)]


def test_grubby_plan_from_recorded_info(tree):
    tree.cmdline("BOOT_IMAGE=x ro intel_iommu=off")
    asked = []

    def query(argv):
        asked.append(argv)
        return GRUBBY_INFO

    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", "grubby", query, live=True)
    assert asked == [["grubby", "--info=ALL"]]
    # intel_iommu is wrong in entry 0, iommu=pt missing there: both go to --args
    assert plan.all_commands == [["grubby", "--update-kernel=ALL", "--args=intel_iommu=on iommu=pt"]]
    assert plan.cmdline_next == "ro rootflags=subvol=root rhgb quiet intel_iommu=on iommu=pt"
    assert not plan.files.changed and plan.reboot_required


@pytest.mark.parametrize("args, state, expected", [
    (["iommu=pt"], "present", [["grubby", "--update-kernel=ALL", "--args=iommu=pt"]]),
    (["rhgb", "quiet"], "present", []),
    (["iommu"], "absent", [["grubby", "--update-kernel=ALL", "--remove-args=iommu"]]),
    (["intel_iommu=on"], "absent", []),
])
def test_grubby_plan_rules(tree, args, state, expected):
    plan = _bootloader.plan_kernel_args(tree.root, args, state, "grubby", lambda argv: GRUBBY_INFO, live=True)
    assert plan.all_commands == expected


def test_grubby_off_host_reads_bls_entries_and_refuses_to_apply(tree):
    tree.write("boot/loader/entries/a.conf", "title A\nlinux /vmlinuz-6.5\noptions ro quiet\n")
    program(tree, "grubby")
    tree.cmdline("ro quiet")
    plan = _bootloader.plan_kernel_args(tree.root, ["iommu=pt"], "present")
    assert plan.bootloader == "grubby" and plan.cmdline_next == "ro quiet iommu=pt"
    with pytest.raises(_bootloader.BootloaderError, match="only on the running host"):
        _bootloader.apply_plan(plan, None, live=False)


def test_parse_grubby_info():
    entries = _bootloader.parse_grubby_info(GRUBBY_INFO)
    assert [e["kernel"] for e in entries] == [
        "/boot/vmlinuz-6.5.6-300.fc39.x86_64", "/boot/vmlinuz-0-rescue-5d0c0c6a1b7e4a0c8f3a2d9e1c7b6a54"]
    assert entries[1]["args"] == "ro rootflags=subvol=root rhgb quiet iommu=pt"


@pytest.mark.parametrize("args, state, expected, nxt", [
    (IOMMU, "present", [["kernelstub", "--delete-options", "intel_iommu=off"],
                        ["kernelstub", "--add-options", "intel_iommu=on iommu=pt"]],
     "quiet loglevel=0 systemd.show_status=false splash intel_iommu=on iommu=pt"),
    (["splash"], "absent", [["kernelstub", "--delete-options", "splash"]],
     "quiet loglevel=0 systemd.show_status=false intel_iommu=off"),
    (["quiet"], "present", [], "quiet loglevel=0 systemd.show_status=false splash intel_iommu=off"),
])
def test_kernelstub_plan(tree, args, state, expected, nxt):
    tree.write("etc/kernelstub/configuration", json.dumps(KERNELSTUB, indent=2))
    tree.cmdline("ro")
    plan = _bootloader.plan_kernel_args(tree.root, args, state)
    assert plan.bootloader == "kernelstub"
    assert plan.all_commands == expected and plan.cmdline_next == nxt


def test_kernelstub_bad_config(tree):
    tree.write("etc/kernelstub/configuration", "{}")
    with pytest.raises(_bootloader.BootloaderError, match="no user.kernel_options"):
        _bootloader.plan_kernel_args(tree.root, IOMMU, "present")


class Runner:
    def __init__(self, rc=0, err=""):
        self.rc, self.err, self.calls = rc, err, []

    def __call__(self, argv):
        self.calls.append(argv)
        return self.rc, "", self.err


def test_apply_runs_regeneration(tree):
    grub_host(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    run = Runner()
    assert _bootloader.apply_plan(plan, run) == {"commands": [["update-grub"]], "commands_skipped": []}
    assert run.calls == [["update-grub"]]
    assert 'quiet intel_iommu=on iommu=pt"' in open(tree.path("etc/default/grub")).read()


@pytest.mark.parametrize("setup, edited", [
    (grub_host, "etc/default/grub"),
    (systemd_boot_host, "etc/kernel/cmdline"),
    (lambda t: systemd_boot_host(t, None), "etc/kernel/cmdline"),  # created, so removed again
])
def test_failed_regeneration_restores_byte_for_byte(tree, setup, edited):
    setup(tree)
    path = tree.path(edited)
    before = open(path, "rb").read() if os.path.exists(path) else None
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    run = Runner(rc=1, err="/etc/grub.d/10_linux: syntax error\n")
    with pytest.raises(_bootloader.BootloaderError, match=r"failed \(rc 1\); restored .*: /etc/grub.d/10_linux: syntax error"):
        _bootloader.apply_plan(plan, run)
    after = open(path, "rb").read() if os.path.exists(path) else None
    assert after == before and run.calls == [plan.all_commands[0]]


def test_off_host_writes_files_and_skips_commands(tree):
    grub_host(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    run = Runner()
    assert _bootloader.apply_plan(plan, run, live=False) == {"commands": [], "commands_skipped": [["update-grub"]]}
    assert run.calls == [] and "intel_iommu=on" in open(tree.path("etc/default/grub")).read()


@pytest.mark.parametrize("live", [True, False])
def test_check_mode_writes_and_runs_nothing(tree, live):
    grub_host(tree)
    path = tree.path("etc/default/grub")
    stat = os.stat(path)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present")
    run = Runner()
    applied = _bootloader.apply_plan(plan, run, live=live, check_mode=True)
    assert applied == ({"commands": [["update-grub"]], "commands_skipped": []} if live
                       else {"commands": [], "commands_skipped": [["update-grub"]]})
    assert run.calls == [] and open(path).read() == GRUB and os.stat(path).st_mtime_ns == stat.st_mtime_ns


@pytest.mark.parametrize("cpuinfo, iommu, args, state, expected", [
    ("vendor_id\t: GenuineIntel\n", "auto", [], "present", ["intel_iommu=on", "iommu=pt"]),
    ("vendor_id\t: AuthenticAMD\n", "auto", [], "present", ["amd_iommu=on", "iommu=pt"]),
    ("vendor_id\t: AuthenticAMD\n", None, ["video=efifb:off"], "present", ["amd_iommu=on", "iommu=pt", "video=efifb:off"]),
    ("", "intel", [], "present", ["intel_iommu=on", "iommu=pt"]),
    ("", "none", ["iommu=pt"], "present", ["iommu=pt"]),
    # args win over the IOMMU ones on a shared key
    ("vendor_id\t: GenuineIntel\n", "auto", ["iommu=nopt"], "present", ["intel_iommu=on", "iommu=nopt"]),
    # removing never turns the IOMMU off unless asked
    ("vendor_id\t: GenuineIntel\n", None, ["pcie_acs_override"], "absent", ["pcie_acs_override"]),
    ("vendor_id\t: GenuineIntel\n", "auto", [], "absent", ["intel_iommu=on", "iommu=pt"]),
])
def test_merge_iommu_args(tree, cpuinfo, iommu, args, state, expected):
    tree.write("proc/cpuinfo", cpuinfo)
    assert _bootloader.merge_iommu_args(tree.root, args, iommu, state) == expected


@pytest.mark.parametrize("files, links, expected", [
    # the IOMMU decides over the CPU: a VM with -cpu max (AuthenticAMD) and an Intel IOMMU
    ({"sys/firmware/acpi/tables/DMAR": ""}, [], "intel"),
    ({"sys/firmware/acpi/tables/IVRS": ""}, [], "amd"),
    ({}, ["dmar0"], "intel"),
    ({"sys/firmware/acpi/tables/DMAR": ""}, ["ivhd0"], "amd"),  # running units before tables
    ({}, [], "amd"),  # nothing else: the CPU
])
def test_iommu_vendor(tree, files, links, expected):
    tree.write("proc/cpuinfo", "vendor_id\t: AuthenticAMD\n")
    for rel, text in files.items():
        tree.write(rel, text)
    for unit in links:
        tree.iommu_unit(unit)
    assert _bootloader.iommu_vendor(tree.root) == expected
    assert _bootloader.merge_iommu_args(tree.root, [], "auto", "present")[0] == "%s_iommu=on" % expected


@pytest.mark.parametrize("cpuinfo, message", [
    (None, "cannot read .*cpuinfo"),
    ("vendor_id\t: HygonGenuine\n", "neither GenuineIntel nor AuthenticAMD"),
    ("processor : 0\n", "no vendor_id"),
])
def test_merge_iommu_args_unknown_cpu(tree, cpuinfo, message):
    if cpuinfo is not None:
        tree.write("proc/cpuinfo", cpuinfo)
    with pytest.raises(_bootloader.BootloaderError, match=message):
        _bootloader.merge_iommu_args(tree.root, [], "auto", "present")


@pytest.mark.parametrize("args, message", [
    (["a b"], "not a kernel argument"), (['x="y"'], "not a kernel argument"), (["--"], "not a kernel argument|'--'"),
    (["iommu=pt", "iommu=soft"], "more than one value asked for iommu"),
])
def test_bad_args_are_refused(tree, args, message):
    grub_host(tree)
    with pytest.raises(_bootloader.BootloaderError, match=message):
        _bootloader.plan_kernel_args(tree.root, args, "present")


def test_isolation_warnings():
    warnings = _bootloader.isolation_warnings(["pcie_acs_override=downstream", "vfio_iommu_type1.allow_unsafe_interrupts=1"], "present")
    assert len(warnings) == 2 and "interrupt remapping" in warnings[1]
    assert _bootloader.isolation_warnings(["pcie_acs_override"], "absent") == []


@pytest.mark.parametrize("iommu, args, message", [
    ("intel", ["intel_iommu=off"], r"^args has intel_iommu=off, which turns off the intel IOMMU that iommu=intel asks for"),
    ("auto", ["iommu=off"], r"^args has iommu=off, which turns off the intel IOMMU that iommu=auto asks for"),
    ("amd", ["amd_iommu=off", "video=efifb:off"], r"set iommu to none to turn the IOMMU off, or drop amd_iommu=off$"),
])
def test_args_that_turn_off_the_iommu_asked_for_are_refused(tree, iommu, args, message):
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\n")
    with pytest.raises(_bootloader.BootloaderError, match=message):
        _bootloader.merge_iommu_args(tree.root, args, iommu, "present")
    # turning it off on purpose, and removing such an argument, stay possible
    assert _bootloader.merge_iommu_args(tree.root, args, "none", "present") == args
    assert _bootloader.merge_iommu_args(tree.root, args, None, "absent") == args


class Killed(BaseException):
    """The module's process dying while the regeneration runs."""


def killed(argv):
    raise Killed()


@pytest.mark.parametrize("setup", [grub_host, systemd_boot_host])
def test_a_run_killed_during_regeneration_is_finished_by_the_next(tree, setup):
    setup(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True)
    with pytest.raises(Killed):
        _bootloader.apply_plan(plan, killed)
    marker = tree.path("var/lib/passthrough-gpu/bootloader-%s.pending" % plan.bootloader)
    assert os.path.exists(marker)  # the files are written, the boot configuration is not
    again = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True)
    assert again.files.changed is False and again.changed is True and again.all_commands == plan.all_commands
    run = Runner()
    assert _bootloader.apply_plan(again, run)["commands"] == plan.all_commands
    assert run.calls == plan.all_commands and not os.path.exists(marker)
    third = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True)
    assert third.changed is False and third.all_commands == []


def test_a_failed_regeneration_keeps_only_an_earlier_runs_marker(tree):
    grub_host(tree)
    marker = tree.path("var/lib/passthrough-gpu/bootloader-grub.pending")
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True)
    with pytest.raises(_bootloader.BootloaderError, match="restored"):
        _bootloader.apply_plan(plan, Runner(rc=1))
    assert not os.path.exists(marker), "the files are back as they were: nothing is due"
    with pytest.raises(Killed):
        _bootloader.apply_plan(_bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True), killed)
    with pytest.raises(_bootloader.BootloaderError, match="no file was edited"):
        _bootloader.apply_plan(_bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True), Runner(rc=1))
    assert os.path.exists(marker), "the killed run's files are still not in grub.cfg"


def test_no_marker_off_host_or_in_check_mode(tree):
    grub_host(tree)
    plan = _bootloader.plan_kernel_args(tree.root, IOMMU, "present", live=True)
    _bootloader.apply_plan(plan, Runner(), check_mode=True)
    _bootloader.apply_plan(plan, Runner(), live=False)
    assert not os.path.exists(tree.path("var/lib/passthrough-gpu"))
