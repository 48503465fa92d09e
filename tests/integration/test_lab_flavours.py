# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The systemd-boot lab flavour (LAB_FLAVOUR=systemd-boot) against the default grub flavour.

It must offer what a module's systemd_boot path needs on a real Debian 12 host: systemd-boot
installed on an ESP partition, the kernel command line in /etc/kernel/cmdline, and
`kernel-install add` + a reboot changing /proc/cmdline; and the same PCI devices and IOMMU groups
as the grub flavour, read from both VMs here. One VM at a time (two under TCG on two cores would
slow both): the grub VM is read and stopped before the systemd-boot VM starts.
"""

import os
import shlex
import subprocess

import pytest

from conftest import LAB, Lab, free_port  # pylint: disable=import-error
from helpers import ansible_module

# Arguments that the boot path adds to /proc/cmdline besides /etc/kernel/cmdline: systemd-boot
# passes the entry's initrd as initrd=, kernel-install appends systemd.machine_id=.
ADDED_BY_BOOT = ("initrd=", "systemd.machine_id=")
# The devices whose IOMMU groups the flavours must share: the isolated GPU group and the shared one.
WATCHED = ("0000:01:00.0", "0000:01:00.1", "0000:03:01.0", "0000:03:02.0")


def boot(flavour, tmp_path_factory):
    vm = Lab(free_port(), tmp_path_factory.mktemp("lab-run-" + flavour), flavour=flavour)
    # The image is built here if missing or out of date (about 35 s from the cached base tarball);
    # "up to date" otherwise.
    vm.run("build-image.sh", timeout=3600)
    vm.run("start.sh", timeout=900)
    return vm


def groups_of(vm):
    """{device address: sorted members of its IOMMU group}, for the watched devices, from sysfs."""
    out = vm.ssh("for d in %s; do echo $d $(ls /sys/bus/pci/devices/$d/iommu_group/devices); done"
                 % " ".join(WATCHED))
    return dict((line.split()[0], sorted(line.split()[1:])) for line in out.splitlines())


def args_of(cmdline):
    return [arg for arg in shlex.split(cmdline) if not arg.startswith(ADDED_BY_BOOT)]


@pytest.fixture(scope="module")
def grub_groups(tmp_path_factory):
    vm = boot("grub", tmp_path_factory)
    try:
        return groups_of(vm)
    finally:
        vm.run("stop.sh", timeout=300)


@pytest.fixture(scope="module")
def sdboot(grub_groups, tmp_path_factory):  # pylint: disable=unused-argument,redefined-outer-name
    """A systemd-boot lab VM, started after the grub VM of grub_groups is gone; always stopped."""
    vm = None
    try:
        vm = boot("systemd-boot", tmp_path_factory)
        yield vm
    finally:
        if vm is not None:
            vm.run("stop.sh", timeout=300)


def test_systemd_boot_is_the_boot_loader(sdboot):
    assert sdboot.ssh("bootctl is-installed").strip() == "yes"
    status = sdboot.ssh("bootctl status 2>/dev/null || true")
    assert "Product: systemd-boot" in status
    # No GRUB tools on this flavour, so bootloader detection cannot take it for a GRUB host.
    assert sdboot.ssh("command -v update-grub grub-mkconfig || true").strip() == ""
    assert sdboot.ssh("findmnt -n -o FSTYPE /boot/efi").strip() == "vfat"


def test_kernel_cmdline_file_is_the_running_cmdline(sdboot):
    configured = shlex.split(sdboot.ssh("cat /etc/kernel/cmdline"))
    running = sdboot.ssh("cat /proc/cmdline")
    assert args_of(running) == configured
    assert "intel_iommu=on" in configured and "console=ttyS0,115200" in configured


def test_same_iommu_groups_as_grub(sdboot, grub_groups):
    groups = groups_of(sdboot)
    assert groups == grub_groups
    assert groups["0000:01:00.0"] == ["0000:01:00.0", "0000:01:00.1"]
    assert {"0000:03:01.0", "0000:03:02.0"} <= set(groups["0000:03:01.0"])


def test_dracut_installable_offline(sdboot):
    # Only apt's plan (the install itself rebuilds the initramfs: minutes under TCG): the local
    # .debs and what is installed are enough, and initramfs-tools gives way.
    plan = sdboot.ssh("cd /var/cache/lab-debs/dracut && "
                      "apt-get install -s -o Debug::NoLocking=1 --no-install-recommends ./*.deb")
    assert "Inst dracut " in plan and "Inst dracut-core " in plan
    assert "Remv initramfs-tools " in plan


def test_kernel_install_and_reboot_change_proc_cmdline(sdboot):
    marker = "lab_flavour_test=%d" % os.getpid()
    sdboot.ssh("echo \"$(cat /etc/kernel/cmdline) %s\" > /etc/kernel/cmdline" % marker)
    # What Debian's own hooks run (/etc/kernel/postinst.d/zz-systemd-boot): the loader entry's
    # options are rewritten from /etc/kernel/cmdline, the kernel and initrd copied again.
    sdboot.ssh('kernel-install add "$(uname -r)" "/boot/vmlinuz-$(uname -r)"', timeout=600)
    entry = sdboot.ssh("cat /boot/efi/loader/entries/$(cat /etc/machine-id)-$(uname -r).conf")
    assert marker in entry
    assert marker not in sdboot.ssh("cat /proc/cmdline")

    result = ansible_module("lab", "ansible.builtin.reboot", "reboot_timeout=900",
                            inventory=sdboot.inventory, env=sdboot.env, timeout=1200)
    assert result.get("rebooted") is True, result

    running = sdboot.ssh("cat /proc/cmdline")
    assert marker in args_of(running)
    assert args_of(running) == shlex.split(sdboot.ssh("cat /etc/kernel/cmdline"))


def test_unknown_flavour_is_refused():
    proc = subprocess.run(["bash", os.path.join(LAB, "start.sh")], env=dict(os.environ, LAB_FLAVOUR="lilo"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "unknown LAB_FLAVOUR 'lilo'" in proc.stderr
