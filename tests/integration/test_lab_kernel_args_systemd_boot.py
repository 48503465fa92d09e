# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu_kernel_args on the systemd-boot lab flavour: /etc/kernel/cmdline, kernel-install, a reboot."""

from helpers import ansible_module

LAB_FLAVOUR = "systemd-boot"  # read by the lab fixture
ARGS = {"args": ["video=efifb:off"]}
CHECK = {"check_mode": True, "diff": True}


def kernel_args(lab, task=None):
    return ansible_module("lab", "passthrough.gpu.iommu_kernel_args", ARGS, env=lab.env, task=task)


def test_check_apply_check_apply_then_reboot(lab):
    before = lab.ssh("sha256sum /etc/kernel/cmdline; stat -c %Y /etc/kernel/cmdline")
    check1 = kernel_args(lab, CHECK)
    assert lab.ssh("sha256sum /etc/kernel/cmdline; stat -c %Y /etc/kernel/cmdline") == before
    apply1 = kernel_args(lab, {"diff": True})
    check2 = kernel_args(lab, CHECK)
    apply2 = kernel_args(lab, {"diff": True})
    assert [r["changed"] for r in (check1, apply1, check2, apply2)] == [True, True, False, False]
    assert apply1["bootloader"] == "systemd_boot"
    assert apply1["diff"] == check1["diff"] and check1["diff"][0]["before_header"] == "/etc/kernel/cmdline"
    assert apply1["commands"] and all(c[0].endswith("kernel-install") for c in apply1["commands"])
    configured = lab.ssh("cat /etc/kernel/cmdline").split()
    assert {"intel_iommu=on", "iommu=pt", "video=efifb:off"} <= set(configured)
    # kernel-install wrote the new options into the boot entry on the ESP
    assert "video=efifb:off" in lab.ssh("cat /boot/efi/loader/entries/*.conf")
    assert apply2["reboot_required"] is True

    ansible_module("lab", "ansible.builtin.reboot", {"reboot_timeout": 900}, env=lab.env, timeout=1200)
    running = lab.ssh("cat /proc/cmdline").split()
    assert {"intel_iommu=on", "iommu=pt", "video=efifb:off"} <= set(running)
    after = kernel_args(lab)
    assert after["changed"] is False and after["reboot_required"] is False
