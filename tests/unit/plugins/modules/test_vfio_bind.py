# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

from ansible_collections.passthrough.gpu.plugins.modules import vfio_bind

CONF = "etc/modprobe.d/passthrough-gpu-vfio.conf"
MODULES = "etc/initramfs-tools/modules"


def lab_root(tree):
    tree.lab()
    os.makedirs(tree.path("lib/modules/6.1.0-50-amd64"))
    tree.write(MODULES, "# List of modules\n")
    tree.write("usr/sbin/update-initramfs", "")
    return tree


def test_check_apply_check_apply(tree, run_module):
    lab_root(tree)
    args = {"root": tree.root, "devices": ["01:00.0"]}
    before = tree.snapshot()
    code, check = run_module(vfio_bind, dict(args, _ansible_check_mode=True, _ansible_diff=True))
    assert code == 0 and check["changed"] is True and tree.snapshot() == before
    assert [d["address"] for d in check["devices"]] == ["0000:01:00.0", "0000:01:00.1"]
    assert check["initramfs"] == "initramfs-tools" and len(check["diff"]) == 2
    code, apply = run_module(vfio_bind, args)
    assert code == 0 and apply["changed"] is True and tree.snapshot() != before
    assert apply["files"] == check["files"] and apply["initramfs_rebuild_required"] is True
    assert any("runtime binding: root is" in w for w in apply["warnings"])
    code, check2 = run_module(vfio_bind, dict(args, _ansible_check_mode=True))
    assert code == 0 and check2["changed"] is False
    code, apply2 = run_module(vfio_bind, args)
    assert code == 0 and apply2["changed"] is False and apply2["files"] == []

    code, gone = run_module(vfio_bind, dict(args, state="unbound"))
    assert code == 0 and gone["changed"] is True and not os.path.exists(tree.path(CONF))
    assert open(tree.path(MODULES)).read() == "# List of modules\n"


def test_refusal_fails_and_changes_nothing(tree, run_module):
    lab_root(tree)
    before = tree.snapshot()
    code, result = run_module(vfio_bind, {"root": tree.root, "devices": ["03:01.0"]})
    assert code == 1 and result["failed"] is True and result.get("changed") is not True
    assert "IOMMU group 9 is not isolated" in result["msg"] and "allow_shared_group" in result["msg"]
    assert tree.snapshot() == before


def test_unknown_id_is_named(tree, run_module):
    lab_root(tree)
    code, result = run_module(vfio_bind, {"root": tree.root, "devices": ["dead:beef"]})
    assert code == 1 and result["msg"] == "no PCI device has the id dead:beef"
