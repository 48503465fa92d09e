# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu_facts' platform facts: what the roles' preflight judges CPU, firmware and distribution by."""

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _platform
from ansible_collections.passthrough.gpu.plugins.filter.kvm_host import preflight, probe

INTEL = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx pdpe1gb\n"


@pytest.mark.parametrize("text, expected", [
    (INTEL, "vmx"),
    ("processor\t: 0\nflags\t\t: fpu svm lm\n", "svm"),
    ("processor\t: 0\nflags\t\t: fpu pse\n", ""),
    # vmx only in "vmx flags" (its feature list) or in a model name is not the CPU flag.
    ("flags\t\t: fpu pse\nvmx flags\t: vnmi preemption_timer\nmodel name\t: svm-like\n", ""),
    ("flags\t\t: fpu vmxon\n", ""),
    (None, None),
])
def test_cpu_virtualization(text, expected):
    assert _platform.cpu_virtualization(text) == expected


def test_read_platform_on_a_bare_root(tmp_path):
    assert _platform.read_platform(str(tmp_path)) == {
        "cpu_virtualization": None, "uefi": False, "firmware_iommu": None, "vendor_reset_loaded": False,
        "os_family": None}


def test_read_platform_finds_each_marker(tmp_path):
    for rel, text in (("proc/cpuinfo", INTEL), ("sys/firmware/efi/fw_platform_size", "64\n"),
                      ("sys/firmware/acpi/tables/IVRS", "IVRS"), ("sys/module/vendor_reset/initstate", "live\n"),
                      ("etc/redhat-release", "Rocky Linux 9\n")):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert _platform.read_platform(str(tmp_path)) == {
        "cpu_virtualization": "vmx", "uefi": True, "firmware_iommu": "amd", "vendor_reset_loaded": True,
        "os_family": "RedHat"}
    assert probe(_platform.read_platform(str(tmp_path)))["pkg_mgr"] == "dnf"


@pytest.mark.parametrize("virt, message", [
    (None, "/proc/cpuinfo could not be read"),
    ("", "the CPU shows no virtualization flag"),
])
def test_preflight_refuses_without_cpu_virtualization(virt, message):
    plan = preflight({"enabled": True, "devices": {}, "groups": []},
                     probe({"cpu_virtualization": virt, "uefi": True}), ["0000:01:00.0"], {})
    assert plan["problems"][0].startswith(message), plan["problems"]


def test_preflight_lists_candidates_when_no_gpu_is_asked_for():
    devices = {
        "0000:00:02.0": {"address": "0000:00:02.0", "class": "030000", "boot_vga": True},
        "0000:01:00.0": {"address": "0000:01:00.0", "class": "030000", "boot_vga": False},
        "0000:01:00.1": {"address": "0000:01:00.1", "class": "040300", "boot_vga": None},
    }
    plan = preflight({"enabled": True, "devices": devices, "groups": []},
                     probe({"cpu_virtualization": "svm", "uefi": True}), [], {"role": "proxmox_host"})
    assert plan["problems"] == [] and plan["addresses"] == []
    assert plan["notes"] == ["proxmox_host_gpus is empty: the host gets its kernel arguments and huge pages, and no "
                             "device is bound to vfio-pci. Name the GPUs by address or vendor:device id to bind them; "
                             "candidates: 0000:01:00.0"]
