# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu_kernel_args on the lab VM: real GRUB, real update-grub, a real reboot.

The target (tests/integration/targets/iommu_kernel_args) asserts check -> apply -> check -> apply,
the reboot and /proc/cmdline itself; the tests here also read the VM directly (sha256sum,
/proc/cmdline) so a target that asserted too little would not hide a failure.
"""

from helpers import ansible_module, run_target


def test_check_apply_reboot(lab, tmp_path):
    before = lab.ssh("cat /proc/cmdline").split()
    assert "video=efifb:off" not in before and "iommu=pt" not in before
    run_target(lab, "iommu_kernel_args", tmp_path)
    after = lab.ssh("cat /proc/cmdline").split()
    assert {"intel_iommu=on", "iommu=pt", "video=efifb:off"} <= set(after)
    # every argument the VM booted with before is still there: nothing unrelated was lost
    assert set(before) - set(after) <= {a for a in before if a.startswith("BOOT_IMAGE=")}
    assert lab.ssh("grep -c '^GRUB_CMDLINE_LINUX_DEFAULT=' /etc/default/grub").strip() == "1"


FILES = "/etc/default/grub /boot/grub/grub.cfg"
BROKEN = "/etc/grub.d/09_lab_broken"


def test_failed_update_grub_restores_defaults_byte_for_byte(lab):
    sums = lab.ssh("sha256sum %s" % FILES)
    lab.ssh("printf '#!/bin/sh\\necho lab: broken on purpose >&2\\nexit 3\\n' > %s && chmod +x %s" % (BROKEN, BROKEN))
    try:
        result = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", {"args": ["quiet"]},
                                env=lab.env, may_fail=True)
    finally:
        lab.ssh("rm -f %s" % BROKEN)
    assert result["failed"] is True
    assert "update-grub failed" in result["msg"] and "lab: broken on purpose" in result["msg"]
    assert "restored" in result["msg"] and "/etc/default/grub" in result["msg"]
    assert lab.ssh("sha256sum %s" % FILES) == sums
    # and without the broken script the same call works
    result = ansible_module("lab", "passthrough.gpu.iommu_kernel_args", {"args": ["quiet"]}, env=lab.env)
    assert result["changed"] is True and result["commands"] == [["update-grub"]]
    assert "quiet" in lab.ssh("grep ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub")
