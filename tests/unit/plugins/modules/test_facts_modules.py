# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from ansible_collections.passthrough.gpu.plugins.modules import gpu_facts, iommu_facts


def test_iommu_facts(tree, run_module):
    tree.workstation()
    code, result = run_module(iommu_facts, {"root": tree.root})
    assert code == 0 and result["changed"] is False
    facts = result["ansible_facts"]["passthrough_iommu"]
    assert facts["enabled"] is True and "warnings" not in facts
    assert set(facts["devices"]) >= {"0000:01:00.0", "0000:01:00.1"}
    assert [g["id"] for g in facts["groups"] if not g["isolated"]] == [3]
    # The workstation tree has no cpuinfo, ACPI tables or release file: each reads as absent.
    assert facts["platform"] == {"cpu_virtualization": None, "uefi": False, "firmware_iommu": None,
                                 "vendor_reset_loaded": False, "os_family": None}


def test_iommu_facts_warns(tree, run_module):
    tree.workstation()
    tree.cmdline("intel_iommu=on pcie_acs_override=downstream")
    code, result = run_module(iommu_facts, {"root": tree.root})
    assert code == 0 and any("pcie_acs_override" in w for w in result["warnings"])


def test_iommu_facts_fails_clearly(tmp_path, run_module):
    code, result = run_module(iommu_facts, {"root": str(tmp_path)})
    assert code == 1 and result["failed"] is True
    assert "cannot list PCI devices" in result["msg"]


def test_gpu_facts(tree, run_module):
    tree.workstation()
    code, result = run_module(gpu_facts, {"root": tree.root})
    assert code == 0 and result["changed"] is False
    gpus = result["ansible_facts"]["passthrough_gpus"]
    assert [g["address"] for g in gpus] == ["0000:00:02.0", "0000:01:00.0"]
    assert "  ready: yes" in result["summary"]


def test_gpu_facts_check_rom_needs_live_root(tree, run_module):
    tree.workstation()
    code, result = run_module(gpu_facts, {"root": tree.root, "check_rom": True})
    assert code == 0 and "option ROMs were not read" in result["warnings"][0]
    assert all(g["rom"] is None for g in result["ansible_facts"]["passthrough_gpus"])


def test_gpu_facts_rejects_unknown_option(tree, run_module):
    code, result = run_module(gpu_facts, {"root": tree.root, "romcheck": True})
    assert code == 1 and "romcheck" in result["msg"]


def test_gpu_facts_refuses_bad_class(tree, run_module):
    tree.workstation()
    code, result = run_module(gpu_facts, {"root": tree.root, "device_classes": [3]})
    assert code == 1 and "'3' is not a PCI class prefix" in result["msg"]
