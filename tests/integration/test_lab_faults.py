# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Faults injected into a real run on the lab VM (grub flavour), one VM for the whole file.

Each test breaks one thing the modules depend on, checks what the module said and that the VM is
as before (sha256 of every file the module or its command may touch, read in the VM), then undoes
the fault so the next test starts from a working VM. In file order (docs/faults.md says what each
one shows):

1. update-grub fails (a broken /etc/grub.d script): files put back byte for byte;
2. update-initramfs fails (a broken initramfs-tools hook): files and the initrd as before, the GPU
   still on its driver;
3. vfio-pci cannot be loaded / does not bind: a clear failure, the device back on its driver;
4. ansible-playbook killed (SIGKILL, the whole process tree) while update-initramfs / update-grub
   run: the rerun converges with no duplicated line, a third run changes nothing;
5. a reboot that does not come back (init=/bin/false): a clear timeout, in bounded time. Last: the
   VM is left broken.

A test never rebinds the GPU itself at runtime: Debian 12's qxl oopses when it gets a device back in
the same boot (see test_lab_vfio.py); runtime faults use its audio function (snd_hda_intel).
"""

import json
import os
import shlex
import signal
import subprocess
import time

import pytest

from helpers import BIN, REPO, ansible_env, ansible_module
from vfio_lab import AUDIO, CONF, GPU, drivers

MODULES = "/etc/initramfs-tools/modules"
PENDING_DIR = "/var/lib/passthrough-gpu"
INITRD = "/boot/initrd.img-$(uname -r)"
# What update-grub and update-initramfs read or write, and where the modules keep their markers.
GRUB_TREES = "/etc/default /boot/grub %s" % PENDING_DIR
INITRAMFS_TREES = "/etc/modprobe.d /etc/initramfs-tools /boot %s" % PENDING_DIR
# The hold file a slow hook waits on (bounded, so a test that dies leaves no hook running for long).
HOLD = "/run/lab-fault-hold"
SLOW = "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\ni=0\nwhile [ -e %s ] && [ $i -lt 300 ]; do sleep 1; i=$((i+1)); done\n" % HOLD
BROKEN = "#!/bin/sh\n[ \"$1\" = prereqs ] && exit 0\necho 'lab: broken on purpose' >&2\nexit 1\n"
VFIO_PERSIST = {"devices": [GPU], "runtime": False}
# update-initramfs under TCG: about a minute on an idle machine, over ten at host load 9 (measured).
REBUILD_TIMEOUT = 1800
# iommu_kernel_args resumes an interrupted update-grub once _bootloader uses _files.Pending.
with open(os.path.join(REPO, "plugins", "module_utils", "_bootloader.py")) as _source:
    BOOTLOADER_RESUMES = "_files.Pending(" in _source.read()


def manifest(lab, trees):
    """``{path: sha256}`` of every file under ``trees`` (missing trees are empty), read in the VM."""
    out = lab.ssh("for d in %s; do [ -e \"$d\" ] && find \"$d\" -type f -print0; done "
                  "| sort -z | xargs -0 -r sha256sum" % trees)
    return dict(reversed(line.split(None, 1)) for line in out.splitlines())


def install_script(lab, path, text):
    lab.ssh("printf '%%s' %s > %s && chmod 755 %s" % (shlex.quote(text), path, path))


def running(lab, name):
    """Whether a process whose command line holds ``name`` runs in the VM ([x]yz: not the asking shell)."""
    pattern = shlex.quote("[%s]%s" % (name[0], name[1:]))
    return "yes" in lab.ssh("pgrep -f %s >/dev/null && echo yes || echo no" % pattern)


def words(text):
    """Text with runs of white space made one space: ansible wraps long warnings."""
    return " ".join(text.split())


def without(files, *paths):
    return dict((p, s) for p, s in files.items() if p not in paths)


def test_failed_update_grub_puts_every_file_back(lab):
    hook = "/etc/grub.d/09_lab_fault_broken"
    before = manifest(lab, GRUB_TREES)
    install_script(lab, hook, BROKEN)
    try:
        result = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", {"args": ["video=efifb:off"]},
                                env=lab.env, may_fail=True)
    finally:
        lab.ssh("rm -f %s" % hook)
    assert result["failed"] is True
    assert "update-grub failed (rc 1)" in result["msg"] and "lab: broken on purpose" in result["msg"]
    assert "restored /etc/default/grub" in result["msg"] and "byte for byte" in result["msg"]
    after = manifest(lab, GRUB_TREES)
    # grub-mkconfig itself leaves its half-written grub.cfg.new behind; GRUB never reads it and the
    # next update-grub replaces it. Everything else, the module's marker included, is as before.
    print("update-grub left grub.cfg.new: %s" % ("/boot/grub/grub.cfg.new" in after))
    assert without(after, "/boot/grub/grub.cfg.new") == before
    assert "video=efifb:off" not in lab.ssh("cat /etc/default/grub /boot/grub/grub.cfg")


def test_failed_initramfs_rebuild_puts_files_and_initrd_back(lab):
    hook = "/etc/initramfs-tools/hooks/zz-broken"
    install_script(lab, hook, BROKEN)
    try:
        before = manifest(lab, INITRAMFS_TREES)
        initrd = lab.ssh("sha256sum %s" % INITRD)
        result = ansible_module("lab", "passthrough.gpu.vfio_bind", VFIO_PERSIST, env=lab.env, may_fail=True,
                                timeout=REBUILD_TIMEOUT)
        after = manifest(lab, INITRAMFS_TREES)
    finally:
        lab.ssh("rm -f %s" % hook)
    assert result["failed"] is True
    assert "update-initramfs -u -k all failed (rc 1)" in result["msg"]
    assert "%s, %s were put back as they were" % (MODULES, CONF) in result["msg"]
    assert "zz-broken failed with return 1" in result["msg"] and "lab: broken on purpose" in result["msg"]
    assert after == before, "no file changed, none left behind (.new, .dpkg-bak, marker)"
    assert lab.ssh("sha256sum %s" % INITRD) == initrd
    assert drivers(lab, GPU, AUDIO) == ["qxl", "snd_hda_intel"]


NO_VFIO = "/etc/modprobe.d/zz-lab-fault-no-vfio.conf"


@pytest.mark.parametrize("install, message, rebound", ids=["modprobe-fails", "no-driver-appears"], argvalues=[
    # modprobe fails: nothing is touched
    ("/bin/false", "modprobe vfio-pci failed (rc 1)", False),
    # modprobe "succeeds" and no vfio-pci driver appears: the audio function is unbound, the
    # probe finds no driver, and the module gives it back to snd_hda_intel
    ("/bin/true", "binding %s to vfio-pci failed: its driver is none, not vfio-pci. Put back: %s on "
                  "snd_hda_intel. No file was written." % (AUDIO, AUDIO), True),
])
def test_rebinding_fails_device_back_on_its_driver(lab, install, message, rebound):
    assert lab.ssh("test -d /sys/bus/pci/drivers/vfio-pci && echo loaded || echo absent").strip() == "absent"
    lab.ssh("echo 'install vfio_pci %s' > %s" % (install, NO_VFIO))
    before = manifest(lab, INITRAMFS_TREES)
    probes = lab.ssh("dmesg | grep -c 'autoconfig for Generic' || true").strip()
    try:
        result = ansible_module("lab", "passthrough.gpu.vfio_bind", {"devices": [AUDIO], "include_group": False},
                                env=lab.env, may_fail=True)
    finally:
        lab.ssh("rm -f %s" % NO_VFIO)
    assert result["failed"] is True and message in result["msg"]
    assert drivers(lab, GPU, AUDIO) == ["qxl", "snd_hda_intel"]
    assert lab.ssh("cat /sys/bus/pci/devices/%s/driver_override" % AUDIO).strip() == "(null)"
    assert manifest(lab, INITRAMFS_TREES) == without(before, NO_VFIO), "persistent files untouched"
    # snd_hda_intel logs its codec setup at each probe: one more when the function left and came back
    after = lab.ssh("dmesg | grep -c 'autoconfig for Generic' || true").strip()
    assert int(after) == int(probes) + (1 if rebound else 0), (probes, after)
    assert lab.ssh("test -d /sys/bus/pci/drivers/vfio-pci && echo loaded || echo absent").strip() == "absent"


def descendants(pid):
    """``pid`` and every process below it (ansible's workers setsid() out of its process group)."""
    children = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def kill_while(lab, module, args, hook, remote_command):
    """Start ``module`` in ansible-playbook, wait until ``hook`` (a slow script its command runs)
    is running in the VM, then SIGKILL the controller's process group and every descendant."""
    install_script(lab, hook, SLOW)
    lab.ssh("touch %s" % HOLD)
    play = [{"hosts": "lab", "gather_facts": False, "tasks": [{"name": "killed partway", module: args}]}]
    playbook = os.path.join(lab.run_dir, "killed.yml")
    with open(playbook, "w") as handle:
        json.dump(play, handle)
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory, playbook], cwd=REPO,
                            env=ansible_env(**lab.env), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 1200  # measured: 570 s to the hook at host load 9
        while not running(lab, os.path.basename(hook)):
            assert proc.poll() is None, "ansible-playbook ended (rc %s) before %s ran" % (proc.returncode, hook)
            assert time.monotonic() < deadline, "%s never ran" % hook
            time.sleep(2)
    finally:
        victims = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait()
    # The module and its command die with the ssh session (SIGHUP on its pty); wait for that, then
    # take the fault away.
    for _attempt in range(30):
        if not any(running(lab, name) for name in (remote_command, "AnsiballZ_", os.path.basename(hook))):
            break
        time.sleep(2)
    else:
        pytest.fail("%s still runs in the VM after ansible-playbook was killed" % remote_command)
    lab.ssh("rm -f %s %s" % (hook, HOLD))
    return len(victims)


def test_killed_during_vfio_bind_rerun_converges(lab):
    initrd = lab.ssh("sha256sum %s" % INITRD)
    killed = kill_while(lab, "passthrough.gpu.vfio_bind", VFIO_PERSIST, "/etc/initramfs-tools/hooks/zz-lab-slow",
                        "update-initramfs")
    print("killed %d processes" % killed)
    # Killed between the files and the rebuild: files written, initrd still the old one, marker left.
    assert "options vfio-pci ids=" in lab.ssh("cat %s" % CONF)
    assert lab.ssh("sha256sum %s" % INITRD) == initrd
    assert "vfio_bind-initramfs.pending" in lab.ssh("ls %s" % PENDING_DIR)

    check = ansible_module("lab", "passthrough.gpu.vfio_bind", VFIO_PERSIST, env=lab.env,
                           task={"check_mode": True})
    assert check["changed"] is True and check["files"] == []
    assert "did not finish update-initramfs -u -k all" in words(check["_output"])
    rerun = ansible_module("lab", "passthrough.gpu.vfio_bind", VFIO_PERSIST, env=lab.env, timeout=REBUILD_TIMEOUT)
    assert rerun["changed"] is True and [c["argv"] for c in rerun["commands"]] == [
        ["update-initramfs", "-u", "-k", "all"]]
    assert lab.ssh("sha256sum %s" % INITRD) != initrd
    assert "etc/modprobe.d/passthrough-gpu-vfio.conf" in lab.ssh("lsinitramfs %s" % INITRD)
    conf, modules = lab.ssh("cat %s" % CONF), lab.ssh("cat %s" % MODULES)
    assert [line for line in conf.splitlines() if line.startswith("options")] == [
        "options vfio-pci ids=1b36:0100,8086:293e"]
    assert [conf.count("# device %s " % a) for a in (GPU, AUDIO)] == [1, 1]
    assert conf.count("softdep qxl pre: vfio-pci") == 1 and conf.count("softdep snd_hda_intel pre: vfio-pci") == 1
    assert modules.count("# BEGIN passthrough.gpu.vfio_bind") == 1 and modules.count("\nvfio_pci\n") == 1
    assert lab.ssh("ls -A %s" % PENDING_DIR).strip() == ""
    third = ansible_module("lab", "passthrough.gpu.vfio_bind", VFIO_PERSIST, env=lab.env)
    assert third["changed"] is False and third["commands"] == []


def test_killed_during_iommu_kernel_args_rerun_converges(lab):
    args = {"args": ["video=efifb:off"]}
    try:
        kill_while(lab, "passthrough.gpu.iommu_kernel_args", args, "/etc/grub.d/09_lab_slow", "grub-mkconfig")
        assert "video=efifb:off" in lab.ssh("grep ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub")
        assert "video=efifb:off" not in lab.ssh("cat /boot/grub/grub.cfg"), "killed before grub.cfg was written"
        rerun = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", args, env=lab.env)
        if not BOOTLOADER_RESUMES:
            # The bug, as measured: the files look done, so update-grub never runs again.
            assert rerun["changed"] is False and rerun["commands"] == [] and rerun["reboot_required"] is True
            pytest.xfail("_bootloader.py does not mark update-grub pending yet (fix in helper F's report, "
                         "issue 6): the rerun reports changed=false and grub.cfg stays without the argument")
        assert rerun["changed"] is True and rerun["commands"] == [["update-grub"]]
        defaults = lab.ssh("grep ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub")
        assert lab.ssh("grep -c ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub").strip() == "1"
        assert [defaults.count(a) for a in ("intel_iommu=on", "iommu=pt", "video=efifb:off")] == [1, 1, 1]
        assert "video=efifb:off" in lab.ssh("grep -m1 '^\\s*linux\\s' /boot/grub/grub.cfg")
        third = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", args, env=lab.env)
        assert third["changed"] is False and third["commands"] == []
    finally:
        # whatever happened, the next test needs a grub.cfg that matches /etc/default/grub
        lab.ssh("rm -f /etc/grub.d/09_lab_slow %s && update-grub 2>/dev/null" % HOLD)


REBOOT_TIMEOUT = 60
# Above reboot_timeout: the shutdown command and the last boot-time check, whose ssh connection
# (connect_timeout 10 s, retried 4 times by ansible.cfg) may start just before the deadline.
REBOOT_MARGIN = 240


def test_reboot_that_does_not_come_back_fails_clearly(lab):
    """Last: the VM is left panicking at every boot (the fixture stops it)."""
    result = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", {"args": ["init=/bin/false"]}, env=lab.env)
    assert result["changed"] is True and result["reboot_required"] is True
    started = time.monotonic()
    # pipelining: without it the reboot action leaves a remote temp dir whose removal, after the
    # timeout, fails as UNREACHABLE and hides the timeout message (measured: docs/faults.md).
    result = ansible_module("lab", "ansible.builtin.reboot",
                            {"reboot_timeout": REBOOT_TIMEOUT, "connect_timeout": 10,
                             "msg": "passthrough.gpu fault test"},
                            env=dict(lab.env, ANSIBLE_PIPELINING="True"), may_fail=True)
    elapsed = time.monotonic() - started
    print("reboot that does not come back: failed after %.0f s (reboot_timeout %d s)" % (elapsed, REBOOT_TIMEOUT))
    assert result["failed"] is True
    assert result["msg"] == "Timed out waiting for last boot time check (timeout=%d)" % REBOOT_TIMEOUT
    assert elapsed < REBOOT_TIMEOUT + REBOOT_MARGIN, "bounded: %.0f s" % elapsed
    # Under load the firmware may still be starting when the timeout ends (seen: 60 s were spent
    # before the kernel ran); wait for the panic that proves the VM cannot come back.
    deadline = time.monotonic() + 600
    while "Attempted to kill init" not in lab.serial_tail(100000) and time.monotonic() < deadline:
        time.sleep(5)
    assert "Attempted to kill init" in lab.serial_tail(100000), "the VM panics at boot: %s" % lab.serial_tail(20)
