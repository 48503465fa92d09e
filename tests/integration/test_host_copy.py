# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The facts modules on a copy of this machine's sysfs match what lspci says of this machine.

Reads only: the copy is made with tools/sysfs_snapshot.py into tmp_path.
"""

import os
import subprocess
import sys

import lspci
from helpers import REPO, ansible_module


def snapshot(dest):
    subprocess.run([sys.executable, os.path.join(REPO, "tools", "sysfs_snapshot.py"), str(dest)], check=True)


def host_lspci():
    out = subprocess.run(["lspci", "-D", "-vvnn"], capture_output=True, text=True, check=True).stdout
    devices = lspci.parse(out)
    assert devices, "lspci listed no devices"
    return devices


def test_iommu_facts_on_host_copy(tmp_path):
    snapshot(tmp_path / "root")
    result = ansible_module("localhost", "passthrough.gpu.iommu_facts", {"root": str(tmp_path / "root")})
    lspci.compare(result["ansible_facts"]["passthrough_iommu"]["devices"], host_lspci())


def test_gpu_facts_on_host_copy(tmp_path):
    snapshot(tmp_path / "root")
    result = ansible_module("localhost", "passthrough.gpu.gpu_facts", {"root": str(tmp_path / "root")})
    gpus = result["ansible_facts"]["passthrough_gpus"]
    truth = dict((a, d) for a, d in host_lspci().items() if d["class"].startswith("03"))
    lspci.compare(dict((g["address"], g) for g in gpus), truth)
    assert result["summary"][0].startswith("IOMMU: ")
