# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.modules import iommu_kernel_args

GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet intel_iommu=off"\nGRUB_CMDLINE_LINUX=""\n'


@pytest.fixture
def host(tree):
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "#!/bin/sh\n")
    tree.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\n")
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro quiet")
    return tree


def test_check_apply_check_apply(host, run_module):
    args = {"root": host.root, "_ansible_diff": True}
    before = host.snapshot()
    code, result = run_module(iommu_kernel_args, dict(args, _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True
    assert host.snapshot() == before  # check mode: content and mtime unchanged
    assert result["diff"][0]["after"] == GRUB.replace('"quiet intel_iommu=off"', '"quiet intel_iommu=on iommu=pt"')
    assert result["commands_skipped"] == [["update-grub"]] and result["commands"] == []
    code, applied = run_module(iommu_kernel_args, args)
    assert code == 0 and applied["changed"] is True
    assert {k: v for k, v in applied.items() if k != "warnings"} == {k: v for k, v in result.items() if k != "warnings"}
    assert open(host.path("etc/default/grub")).read() == result["diff"][0]["after"]
    for mode in (True, False):
        code, again = run_module(iommu_kernel_args, dict(args, _ansible_check_mode=mode))
        assert code == 0 and again["changed"] is False and again["diff"] == [] and again["commands_skipped"] == []
        assert again["reboot_required"] is True  # /proc/cmdline still lacks them
    assert applied["bootloader"] == "grub" and applied["args"] == ["intel_iommu=on", "iommu=pt"]
    assert applied["cmdline_next"] == "quiet intel_iommu=on iommu=pt"
    assert applied["cmdline_current"] == "BOOT_IMAGE=/vmlinuz ro quiet"


def test_reboot_not_required_when_running_kernel_has_them(host, run_module):
    host.cmdline("BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt")
    host.write("etc/default/grub", GRUB.replace("intel_iommu=off", "intel_iommu=on iommu=pt"))
    code, result = run_module(iommu_kernel_args, {"root": host.root})
    assert code == 0 and result["changed"] is False and result["reboot_required"] is False


def test_absent_keeps_the_iommu(host, run_module):
    host.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on pcie_acs_override=downstream"\n')
    code, result = run_module(iommu_kernel_args, {"root": host.root, "args": ["pcie_acs_override"], "state": "absent"})
    assert code == 0 and result["changed"] is True and result["args"] == ["pcie_acs_override"]
    assert open(host.path("etc/default/grub")).read() == 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\n'


def test_warns_on_weaker_isolation(host, run_module):
    code, result = run_module(iommu_kernel_args, {"root": host.root, "args": ["pcie_acs_override=downstream,multifunction"]})
    assert code == 0 and any("pcie_acs_override" in w for w in result["warnings"])


@pytest.mark.parametrize("params, message", [
    ({"args": ["iommu=pt", "iommu=soft"]}, "more than one value asked for iommu"),
    ({"args": ["bad arg"]}, "not a kernel argument"),
    ({"iommu": "none"}, "nothing to manage"),
    ({"bootloader": "systemd_boot"}, "kernel-install is not installed"),
    ({"bootloader": "grubby"}, "grubby lists no boot entries"),
])
def test_bad_input_fails_and_changes_nothing(host, run_module, params, message):
    before = host.snapshot()
    code, result = run_module(iommu_kernel_args, dict(params, root=host.root))
    assert code == 1 and message in result["msg"]
    assert host.snapshot() == before


def test_unsafe_grub_file_is_refused(host, run_module):
    host.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="$EXTRA quiet"\n')
    code, result = run_module(iommu_kernel_args, {"root": host.root})
    assert code == 1 and "uses shell expansion" in result["msg"]
