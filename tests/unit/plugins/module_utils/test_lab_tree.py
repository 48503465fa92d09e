# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tree captured from the lab VM's real kernel (tools/sysfs_snapshot.py) with its lspci -vvnn.

Regenerate both with a running lab (see tests/unit/fixtures/lab/README.md).
"""

import os
import tarfile

import pytest

import lspci
from ansible_collections.passthrough.gpu.plugins.module_utils import _gpu, _pci

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "lab")
GIB = 1 << 30


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    with tarfile.open(os.path.join(FIXTURE, "sysfs.tar.gz")) as archive:
        archive.extractall(str(root))  # our own fixture: links and names are known
    return str(root)


@pytest.fixture(scope="module")
def lab_lspci():
    with open(os.path.join(FIXTURE, "lspci-vvnn.txt")) as handle:
        return lspci.parse(handle.read())


def test_devices_match_lspci(lab_root, lab_lspci):
    lspci.compare(_pci.read_devices(lab_root), lab_lspci)


def test_lab_groups_and_verdicts(lab_root):
    facts = _pci.read_iommu(lab_root)
    assert facts["enabled"] and facts["vendor"] == "intel" and facts["units"] == ["dmar0"]
    verdicts = dict((g["id"], g["isolated"]) for g in facts["groups"])
    big = [d for d in facts["devices"].values() if any(b["size_bytes"] == 16 * GIB for b in d["bars"])]
    assert len(big) == 1 and verdicts[big[0]["iommu_group"]] is True
    shared = [g for g in facts["groups"] if not g["isolated"]]
    assert len(shared) == 1 and len(shared[0]["reasons"]) == 2


def test_lab_gpus(lab_root):
    iommu, gpus = _gpu.read_gpus(lab_root)
    ready = dict((g["address"], g["ready"]) for g in gpus)
    assert len(ready) == 3 and sorted(ready.values()) == [False, False, True]
    gpu = [g for g in gpus if g["ready"]][0]
    assert gpu["bars_above_4g"] and gpu["mmio"]["esxi_64bit_mmio_size_gb"] == 32
    assert [f["class"][:4] for f in gpu["companion_functions"]] == ["0403"]
    assert "IOMMU: on (intel)" in _gpu.summary_lines(iommu, gpus)
