# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make the checkout importable as ansible_collections.passthrough.gpu (as `make link` does)."""

import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "passthrough", "gpu")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(REPO, LINK)
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
# Shared test helpers (lspci.py) sit beside this file.
sys.path.insert(0, os.path.dirname(__file__))

# The longest test files first (minutes on 2 cores, measured in make test), so that with two
# workers (`-n 2 --dist loadfile`) neither is left running one long file alone at the end.
LONGEST_FIRST = ("test_molecule.py", "test_lab_vfio.py", "test_lab_faults.py", "test_lab_vfio_dracut.py", "test_molecule_proxmox_host.py",
                 "test_lab_libvirt.py", "test_lab_hugepages.py", "test_lab_kernel_args_systemd_boot.py",
                 "test_molecule_esxi_host.py", "test_lint.py", "test_awx_job_templates.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = os.path.basename(str(item.fspath))
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the order within a file and among the rest stays
