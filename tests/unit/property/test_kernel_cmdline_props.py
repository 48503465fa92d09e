# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Properties of /etc/kernel/cmdline editing (systemd-boot and proxmox-boot-tool, _bootloader).

Each example plans on a host tree in a temporary directory, writes the plan (``apply_plan`` with
``live=False``: files only) and plans again, so the properties hold for what is on disk: the
line ending and every unrelated byte stay, a second run changes nothing, removing what was added
gives the file back byte for byte, and after a reboot into the new command line nothing is left
to do or to reboot for.
"""

import os
import shutil
import tempfile

import pytest
from hypothesis import assume, given, strategies as st

from ansible_collections.passthrough.gpu.plugins.module_utils import _bootloader, _cmdline

from cmdline_strategies import PROPS, arg_lists, cmdlines, key_of

CMDLINE = "etc/kernel/cmdline"
BOOTLOADERS = st.sampled_from(["systemd_boot", "proxmox_boot_tool"])
# how the file ends: one line with or without a newline, CRLF, a blank line after it
ENDINGS = st.sampled_from(["\n", "\n", "", "\r\n", "\n\n", " \n"])
# what the running kernel got: the loader's own arguments first (not wanted in the file)
PROC = "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve root=ZFS=rpool/ROOT/pve-1 boot=zfs ro initrd=\\initrd.img quiet\n"


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8", newline="") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def hosts():
    """``{bootloader: root}``: a systemd-boot and a Proxmox (systemd-boot ESP) host tree.

    Made once; each example writes its own /etc/kernel/cmdline and /proc/cmdline. In /dev/shm when
    there is one: every plan writes with fsync, which on a busy disk is most of the time taken.
    """
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    top = tempfile.mkdtemp(prefix="kernel-cmdline-props.", dir=shm)
    roots = {}
    for bootloader in ("systemd_boot", "proxmox_boot_tool"):
        root = roots[bootloader] = os.path.join(top, bootloader)
        write(root, "usr/bin/kernel-install", "#!/bin/sh\n")
        write(root, "usr/sbin/proxmox-boot-tool", "#!/bin/sh\n")
        write(root, "boot/vmlinuz-6.8.12-4-pve", "")
        os.makedirs(os.path.join(root, "lib/modules/6.8.12-4-pve"))
        if bootloader == "proxmox_boot_tool":
            write(root, "etc/kernel/proxmox-boot-uuids", "6C1A-2B3D\n")
    yield roots
    shutil.rmtree(top)


def host(root, cmdline=None, proc=PROC, usr_lib=None):
    """Set the host's /etc/kernel/cmdline, /proc/cmdline and /usr/lib/kernel/cmdline (None: none)."""
    write(root, "proc/cmdline", proc)
    for rel, text in ((CMDLINE, cmdline), ("usr/lib/kernel/cmdline", usr_lib)):
        if text is None:
            if os.path.exists(os.path.join(root, rel)):
                os.unlink(os.path.join(root, rel))
        else:
            write(root, rel, text)


def run(root, bootloader, args, state):
    """Plan and write; the plan."""
    plan = _bootloader.plan_kernel_args(root, args, state, bootloader, live=False)
    applied = _bootloader.apply_plan(plan, run=None, live=False)
    assert applied["commands"] == []
    assert applied["commands_skipped"] == plan.all_commands
    return plan


def reboot(root):
    """What the kernel gets after a reboot: the loader's arguments, then the file's."""
    write(root, "proc/cmdline", "BOOT_IMAGE=/boot/vmlinuz-6.8.12-4-pve %s\n" % read(root, CMDLINE).strip())


STATES = st.sampled_from(["present", "absent"])


@PROPS
@given(line=cmdlines(gap_chars=" \t"), ending=ENDINGS, args=arg_lists(), state=STATES, bootloader=BOOTLOADERS)
def test_the_line_is_edited_its_ending_kept_and_a_second_run_changes_nothing(
        hosts, line, ending, args, state, bootloader):
    text, root = line[0] + ending, hosts[bootloader]
    host(root, text)
    plan = run(root, bootloader, args, state)
    after = read(root, CMDLINE)
    body = text.rstrip("\r\n")
    assert after == _cmdline.edit(body, args, state) + text[len(body):]
    assert plan.changed == (after != text)
    assert plan.cmdline_next == after.strip()
    commands = {"systemd_boot": [["kernel-install", "add", "6.8.12-4-pve", "/boot/vmlinuz-6.8.12-4-pve"]],
                "proxmox_boot_tool": [["proxmox-boot-tool", "refresh"]]}[bootloader]
    assert plan.all_commands == (commands if plan.changed else [])
    again = run(root, bootloader, args, state)
    assert not again.changed and again.all_commands == []
    assert read(root, CMDLINE) == after


@PROPS
@given(line=cmdlines(gap_chars=" \t"), ending=ENDINGS, args=arg_lists(), by_key=st.booleans(), bootloader=BOOTLOADERS)
def test_removing_what_was_added_gives_back_the_file_byte_for_byte(hosts, line, ending, args, by_key, bootloader):
    text, _leading, pieces, _tail = line
    assume(not set(key_of(a) for _g, a in pieces) & set(key_of(a) for a in args))
    root = hosts[bootloader]
    host(root, text + ending)
    run(root, bootloader, args, "present")
    run(root, bootloader, [key_of(a) for a in args] if by_key else args, "absent")
    assert read(root, CMDLINE) == text + ending


@PROPS
@given(line=cmdlines(gap_chars=" \t"), args=arg_lists(), state=STATES, bootloader=BOOTLOADERS)
def test_after_the_reboot_nothing_is_left_to_do(hosts, line, args, state, bootloader):
    assume(not set(key_of(a) for a in args) & set(_bootloader.LOADER_ADDED))  # the loader adds those
    root = hosts[bootloader]
    host(root, line[0] + "\n")
    run(root, bootloader, args, state)
    reboot(root)
    plan = run(root, bootloader, args, state)
    assert (plan.changed, plan.reboot_required) == (False, False)


@PROPS
@given(usr_lib=st.one_of(st.none(), cmdlines(gap_chars=" \t").map(lambda line: line[0])), args=arg_lists())
def test_a_missing_file_starts_from_what_the_kernel_would_get(hosts, usr_lib, args):
    # systemd 252+: /usr/lib/kernel/cmdline if there is one, else /proc/cmdline without the
    # loader's own BOOT_IMAGE and initrd
    root = hosts["systemd_boot"]
    host(root, None, usr_lib=None if usr_lib is None else usr_lib + "\n")
    plan = run(root, "systemd_boot", args, "present")
    after = read(root, CMDLINE)
    if usr_lib is None:
        kept = [a for a in _cmdline.split(PROC) if key_of(a) not in _bootloader.LOADER_ADDED]
    else:
        kept = _cmdline.split(usr_lib)
    keys = set(key_of(a) for a in args)
    assert after.endswith("\n") and "\n" not in after[:-1]
    assert [a for a in _cmdline.split(after) if key_of(a) not in keys] == [a for a in kept if key_of(a) not in keys]
    assert _bootloader.satisfied(after, args, "present")
    assert plan.changed


@PROPS
@given(text=st.text(max_size=30), args=arg_lists(), state=STATES, bootloader=BOOTLOADERS)
def test_any_file_is_refused_or_edited_so_a_second_run_agrees(hosts, text, args, state, bootloader):
    root = hosts[bootloader]
    host(root, text)
    assert not _bootloader.plan_kernel_args(root, [], state, bootloader, live=False).changed
    try:
        run(root, bootloader, args, state)
    except _bootloader.BootloaderError as exc:
        assert "unclosed double quote" in str(exc)
        assert read(root, CMDLINE) == text
        return
    assert not run(root, bootloader, args, state).changed
    assert _bootloader.satisfied(read(root, CMDLINE), args, state)


@pytest.mark.parametrize("text", ['root=/dev/sda1 dyndbg="file foo.c +p\n', 'quiet "\n', 'a="b c -- d\n'])
def test_an_unclosed_quote_is_refused_and_the_file_left_alone(hosts, text):
    root = hosts["systemd_boot"]
    host(root, text)
    with pytest.raises(_bootloader.BootloaderError, match="unclosed double quote"):
        run(root, "systemd_boot", ["iommu=pt"], "present")
    assert read(root, CMDLINE) == text
