# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_config: the three host modules' work in one run, planned whole before the first change."""

import os

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _hugepages, _vfio
from ansible_collections.passthrough.gpu.plugins.modules import host_config, hugepages, iommu_kernel_args, vfio_bind

GRUB = 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"\n'
VFIO_CONF = "etc/modprobe.d/passthrough-gpu-vfio.conf"
MODULES = "etc/initramfs-tools/modules"


def lab_host(tree):
    """The lab's PCI layout with what the three modules read: memory, CPU, GRUB, initramfs-tools."""
    tree.lab()
    tree.write("proc/meminfo", "MemTotal:        8005196 kB\nHugepagesize:       2048 kB\n")
    tree.write("proc/cpuinfo", "vendor_id\t: GenuineIntel\nflags\t\t: fpu pse pdpe1gb\n")
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       8005196 kB\n")
    tree.write("etc/default/grub", GRUB)
    tree.write("usr/sbin/update-grub", "")
    os.makedirs(tree.path("lib/modules/6.1.0-50-amd64"))
    tree.write(MODULES, "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "")
    return tree


def files(tree):
    """Content of every regular file under the tree, by relative path."""
    found = {}
    for directory, _dirs, names in os.walk(tree.root):
        for name in names:
            full = os.path.join(directory, name)
            if os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as handle:
                    found[os.path.relpath(full, tree.root)] = handle.read()
    return found


@pytest.mark.parametrize("huge", [{"count": 64}, {"size": "1G", "count": 2}, {"count": 16, "nodes": [0]}])
def test_same_files_as_the_three_modules(tmp_path, run_module, huge):
    from sysfs_tree import SysfsTree  # pylint: disable=import-outside-toplevel
    one, three = lab_host(SysfsTree(str(tmp_path / "one"))), lab_host(SysfsTree(str(tmp_path / "three")))
    code, combined = run_module(host_config, {"root": one.root, "hugepages": huge, "kernel_args": {"args": ["video=efifb:off"]},
                                              "vfio": {"devices": ["01:00.0"]}})
    assert code == 0 and combined["changed"] is True, combined
    for module, args in ((hugepages, huge), (iommu_kernel_args, {"iommu": "auto", "args": ["video=efifb:off"]}),
                         (vfio_bind, {"devices": ["01:00.0"]})):
        code, result = run_module(module, dict(args, root=three.root))
        assert code == 0 and result["changed"] is True, result
    ours, theirs = files(one), files(three)
    # The arguments may come in another order (one plan); the rest is byte for byte the same.
    grub = "etc/default/grub"
    assert sorted(ours.pop(grub).split()) == sorted(theirs.pop(grub).split())
    assert ours == theirs
    assert combined["commands_skipped"] == [["update-grub"]]  # one regeneration for both sets of arguments
    assert [d["address"] for d in combined["vfio"]["devices"]] == ["0000:01:00.0", "0000:01:00.1"]


def test_check_apply_check_apply(tree, run_module):
    lab_host(tree)
    args = {"root": tree.root, "hugepages": {"size": "1G", "count": 2}, "kernel_args": {},
            "vfio": {"devices": ["01:00.0"]}, "_ansible_diff": True}
    before = tree.snapshot()
    code, check = run_module(host_config, dict(args, _ansible_check_mode=True))
    assert code == 0 and check["changed"] is True and tree.snapshot() == before
    code, applied = run_module(host_config, args)
    assert code == 0 and applied["changed"] is True and tree.snapshot() != before
    for key in ("files", "args", "cmdline_next", "commands_skipped", "reboot_required"):
        assert check[key] == applied[key], key
    assert check["vfio"]["files"] == applied["vfio"]["files"]
    assert sorted(d["after_header"] for d in check["diff"]) == sorted(d["after_header"] for d in applied["diff"])
    assert applied["args"] == ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=2", "intel_iommu=on", "iommu=pt"]
    assert applied["kernel_args"] == {"args": ["intel_iommu=on", "iommu=pt"], "reboot_required": True}
    assert applied["hugepages"]["persistent_via"] == "kernel_args" and applied["hugepages"]["reboot_required"] is True
    assert applied["reboot_required"] is True
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet default_hugepagesz=1G hugepagesz=1G hugepages=2 intel_iommu=on iommu=pt"' \
        in open(tree.path("etc/default/grub")).read()
    for mode in (True, False):
        code, again = run_module(host_config, dict(args, _ansible_check_mode=mode))
        assert code == 0 and again["changed"] is False and again["diff"] == [] and again["files"] == [], again


def test_2m_pages_go_to_sysctl_next_to_the_kernel_arguments(tree, run_module):
    lab_host(tree)
    code, result = run_module(host_config, {"root": tree.root, "hugepages": {"memory": "1G"}, "kernel_args": {}})
    assert code == 0 and result["hugepages"]["persistent_via"] == "sysctl" and result["hugepages"]["args"] == []
    assert open(tree.path(_hugepages.SYSCTL_FILE)).read() == _hugepages.sysctl_text(512)
    assert result["args"] == ["intel_iommu=on", "iommu=pt"] and result["vfio"] is None
    assert any("runtime pages not set" in w for w in result["warnings"])


@pytest.mark.parametrize("args, message", [
    ({"hugepages": {"count": 4}, "kernel_args": {}, "vfio": {"devices": ["03:01.0"]}}, "IOMMU group 9 is not isolated"),
    ({"hugepages": {"count": 4}, "kernel_args": {}, "vfio": {"devices": ["dead:beef"]}}, "no PCI device has the id dead:beef"),
    ({"hugepages": {"size": "1G", "count": 64}, "vfio": {"devices": ["01:00.0"]}}, "this host has 7.6 GiB of memory"),
    ({"hugepages": {"count": 4}, "kernel_args": {"args": ["hugepages=8"]}}, "kernel arguments hugepages=8 are the huge pages' own"),
    ({"kernel_args": {"iommu": "none"}, "vfio": {"devices": ["01:00.0"]}}, "args is empty and iommu is none"),
    ({"kernel_args": {"args": ["bad arg"]}, "vfio": {"devices": ["01:00.0"]}}, "bad arg"),
    ({}, "nothing to manage: set hugepages, kernel_args or vfio"),
    ({"hugepages": {"count": 1, "memory": "2M"}}, "mutually exclusive"),
    ({"hugepages": {"count": 4, "runtime": False, "persistent": False}, "vfio": {"devices": ["01:00.0"]}},
     "hugepages: runtime and persistent are both false: nothing to do"),
])
def test_any_refusal_changes_nothing(tree, run_module, args, message):
    lab_host(tree)
    before = tree.snapshot()
    code, result = run_module(host_config, dict(args, root=tree.root))
    assert code == 1 and message in result["msg"], result
    assert result.get("changed") is not True and tree.snapshot() == before


def test_unparsable_grub_refuses_before_the_binding(tree, run_module):
    lab_host(tree)
    tree.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="quiet\n')
    before = tree.snapshot()
    code, result = run_module(host_config, {"root": tree.root, "kernel_args": {}, "vfio": {"devices": ["01:00.0"]}})
    assert code == 1 and "grub" in result["msg"].lower(), result
    assert tree.snapshot() == before


def test_a_failure_after_a_change_says_what_was_done(tree, run_module, monkeypatch):
    lab_host(tree)

    def fail(_planned, _host, _check_mode):
        raise _vfio.VfioError("update-initramfs -u -k all failed (rc 1)")

    monkeypatch.setattr(_vfio, "apply", fail)
    code, result = run_module(host_config, {"root": tree.root, "kernel_args": {}, "vfio": {"devices": ["01:00.0"]}})
    assert code == 1 and result["changed"] is True, result
    assert result["msg"] == "update-initramfs -u -k all failed (rc 1) (already done in this run: the boot configuration)"
    assert "intel_iommu=on" in open(tree.path("etc/default/grub")).read()
    # Nothing done before the failure: the module's own message, and no change claimed.
    code, result = run_module(host_config, {"root": tree.root, "kernel_args": {}, "vfio": {"devices": ["01:00.0"]}})
    assert code == 1 and result.get("changed") is not True and result["msg"] == "update-initramfs -u -k all failed (rc 1)"


def test_weakened_isolation_is_warned_about(tree, run_module):
    lab_host(tree)
    weak = ["pcie_acs_override=downstream,multifunction", "vfio_iommu_type1.allow_unsafe_interrupts=1"]
    code, result = run_module(host_config, {"root": tree.root, "kernel_args": {"args": weak}})
    assert code == 0 and result["kernel_args"]["args"][-2:] == weak
    assert sum("pcie_acs_override makes the kernel split" in w for w in result["warnings"]) == 1
    assert sum("allow_unsafe_interrupts lets a guest" in w for w in result["warnings"]) == 1


def test_a_missing_initramfs_program_is_refused_before_anything_changes(tree, run_module, monkeypatch):
    """On the running host (root_is_live) the rebuild's program is looked for before the first change."""
    from ansible.module_utils import basic  # pylint: disable=import-outside-toplevel
    from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec  # pylint: disable=import-outside-toplevel
    lab_host(tree)
    monkeypatch.setattr(_argspec, "root_is_live", lambda root: True)
    monkeypatch.setattr(basic.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: None if name == "update-initramfs" else "/usr/bin/" + name)
    ran = []
    monkeypatch.setattr(basic.AnsibleModule, "run_command", lambda self, argv, **kwargs: ran.append(argv) or (0, "", ""))
    before = tree.snapshot()
    code, result = run_module(host_config, {"root": tree.root, "hugepages": {"size": "1G", "count": 1}, "kernel_args": {},
                                            "vfio": {"devices": ["01:00.0"]}})
    assert code == 1 and result["msg"] == "update-initramfs is not installed; nothing was written", result
    assert tree.snapshot() == before and ran == []


def test_earlier_warnings_come_with_a_later_failure(tree, run_module, monkeypatch):
    lab_host(tree)

    def fail(_planned, _host, _check_mode):
        raise _vfio.VfioError("vfio-pci did not take 0000:01:00.0")

    monkeypatch.setattr(_vfio, "apply", fail)
    code, result = run_module(host_config, {"root": tree.root, "kernel_args": {"args": ["pcie_acs_override=downstream"]},
                                            "vfio": {"devices": ["01:00.0"]}})
    assert code == 1 and result["changed"] is True
    assert any("pcie_acs_override makes the kernel split" in w for w in result["warnings"]), result
