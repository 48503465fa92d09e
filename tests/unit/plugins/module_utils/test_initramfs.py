# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _files, _initramfs

DEBIAN_MODULES = ("# List of modules that you want to include in your initramfs.\n"
                  "# They will be loaded at boot time in the order below.\n#\n# raid1\n# sd_mod\n")
BLOCK_61 = ("# BEGIN passthrough.gpu.vfio_bind: vfio-pci loads before the host's GPU drivers\n"
            "vfio_pci\nvfio\nvfio_iommu_type1\nvfio_virqfd\n# END passthrough.gpu.vfio_bind\n")
MODS_61 = ["vfio_pci", "vfio", "vfio_iommu_type1", "vfio_virqfd"]
MODS_66 = ["vfio_pci", "vfio", "vfio_iommu_type1"]


def touch(root, rel, text=""):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


@pytest.mark.parametrize("files, expected", [
    (["usr/sbin/update-initramfs", "etc/initramfs-tools/modules"], "initramfs-tools"),
    (["etc/initramfs-tools/modules"], "initramfs-tools"),
    (["usr/bin/dracut", "etc/dracut.conf"], "dracut"),
    # Debian after switching to dracut: initramfs-tools' conffiles stay behind.
    (["usr/bin/dracut", "etc/initramfs-tools/modules"], "dracut"),
    (["usr/bin/mkinitcpio", "etc/mkinitcpio.conf"], "mkinitcpio"),
    (["etc/mkinitcpio.conf"], "mkinitcpio"),
    (["sbin/dracut"], "dracut"),
])
def test_detect(tmp_path, files, expected):
    for rel in files:
        touch(tmp_path, rel)
    assert _initramfs.detect(str(tmp_path)) == expected


@pytest.mark.parametrize("wanted", ["initramfs-tools", "dracut", "mkinitcpio", "none"])
def test_detect_explicit(tmp_path, wanted):
    assert _initramfs.detect(str(tmp_path), wanted) == wanted


def test_detect_nothing(tmp_path):
    with pytest.raises(_initramfs.InitramfsError, match="no initramfs generator found.*initramfs to the one"):
        _initramfs.detect(str(tmp_path))
    with pytest.raises(_initramfs.InitramfsError, match="must be one of"):
        _initramfs.detect(str(tmp_path), "booster")


@pytest.mark.parametrize("kernels, osrelease, versions, modules", [
    (["6.1.0-50-amd64"], None, ["6.1.0-50-amd64"], MODS_61),
    (["6.2.0"], None, ["6.2.0"], MODS_66),
    (["6.8.0-45-generic", "5.15.0-100-generic"], None, ["5.15.0-100-generic", "6.8.0-45-generic"], MODS_61),
    (["6.12.1-arch1-1"], "6.1.0", ["6.12.1-arch1-1"], MODS_66),
    ([], "5.4.0-150-generic", ["5.4.0-150-generic"], MODS_61),
    ([], "6.10.3-200.fc40.x86_64", ["6.10.3-200.fc40.x86_64"], MODS_66),
    ([], None, [], MODS_66),
])
def test_vfio_virqfd_only_below_6_2(tmp_path, kernels, osrelease, versions, modules):
    for kernel in kernels:
        os.makedirs(str(tmp_path / "lib" / "modules" / kernel))
    os.makedirs(str(tmp_path / "lib" / "modules" / "extramodules"), exist_ok=True)  # not a version
    if osrelease:
        touch(tmp_path, "proc/sys/kernel/osrelease", osrelease + "\n")
    assert _initramfs.kernel_versions(str(tmp_path)) == versions
    assert _initramfs.vfio_modules(versions) == modules


@pytest.mark.parametrize("current, modules, expected", [
    (None, MODS_61, BLOCK_61),
    (DEBIAN_MODULES, MODS_61, DEBIAN_MODULES + BLOCK_61),
    ("virtio_blk", MODS_61, "virtio_blk\n" + BLOCK_61),
    # an existing block is replaced where it stands; lines after it stay after it
    ("a\n" + BLOCK_61.replace("vfio_virqfd\n", "") + "b\n", MODS_61, "a\n" + BLOCK_61 + "b\n"),
    (DEBIAN_MODULES + BLOCK_61, MODS_61, DEBIAN_MODULES + BLOCK_61),
    (DEBIAN_MODULES + BLOCK_61, None, DEBIAN_MODULES),
    ("a\n" + BLOCK_61 + "b\n", None, "a\nb\n"),
    (DEBIAN_MODULES, None, DEBIAN_MODULES),
    (None, None, None),
])
def test_render_initramfs_tools(current, modules, expected):
    assert _initramfs.render_initramfs_tools(current, modules) == expected


def test_render_initramfs_tools_refuses_a_broken_block():
    with pytest.raises(_initramfs.InitramfsError, match="no matching"):
        _initramfs.render_initramfs_tools(BLOCK_61.splitlines()[0] + "\nvfio\n", None)


@pytest.mark.parametrize("modules, expected", [
    (MODS_66, '# managed by passthrough.gpu.vfio_bind: vfio-pci loads before the host\'s GPU drivers\n'
              'force_drivers+=" vfio_pci vfio vfio_iommu_type1 "\n'),
    (MODS_61, '# managed by passthrough.gpu.vfio_bind: vfio-pci loads before the host\'s GPU drivers\n'
              'force_drivers+=" vfio_pci vfio vfio_iommu_type1 vfio_virqfd "\n'),
    (None, None),
])
def test_render_dracut(modules, expected):
    assert _initramfs.render_dracut(modules) == expected


@pytest.mark.parametrize("current, modules, expected", [
    ("MODULES=()\nHOOKS=(base udev)\n", MODS_66, "MODULES=(vfio_pci vfio vfio_iommu_type1)\nHOOKS=(base udev)\n"),
    ("# comment\nMODULES=(amdgpu)  # gpu\n", MODS_66, "# comment\nMODULES=(vfio_pci vfio vfio_iommu_type1 amdgpu)  # gpu\n"),
    ("MODULES=(vfio_pci vfio vfio_iommu_type1 amdgpu)\n", MODS_66, "MODULES=(vfio_pci vfio vfio_iommu_type1 amdgpu)\n"),
    ("MODULES=(vfio amdgpu)\r\n", MODS_66, "MODULES=(vfio_pci vfio_iommu_type1 vfio amdgpu)\r\n"),
    ("HOOKS=(base)", MODS_66, "HOOKS=(base)\nMODULES=(vfio_pci vfio vfio_iommu_type1)\n"),
    ("MODULES=(vfio_pci vfio vfio_iommu_type1 vfio_virqfd amdgpu)\n", None, "MODULES=(amdgpu)\n"),
    ("MODULES=(amdgpu)\n", None, "MODULES=(amdgpu)\n"),
    ("HOOKS=(base)\n", None, "HOOKS=(base)\n"),
])
def test_render_mkinitcpio(current, modules, expected):
    remove = MODS_61
    assert _initramfs.render_mkinitcpio(current, modules, remove) == expected


@pytest.mark.parametrize("current, message", [
    ("MODULES=(\n  amdgpu\n)\n", "not a one-line"),
    ("MODULES=(a)\nMODULES=(b)\n", "more than once"),
    (None, "does not exist"),
])
def test_render_mkinitcpio_refuses(current, message):
    with pytest.raises(_initramfs.InitramfsError, match=message):
        _initramfs.render_mkinitcpio(current, MODS_66, MODS_61)


@pytest.mark.parametrize("tool, rel, seed, after, argv", [
    ("initramfs-tools", "etc/initramfs-tools/modules", DEBIAN_MODULES, DEBIAN_MODULES + BLOCK_61,
     ["update-initramfs", "-u", "-k", "all"]),
    ("dracut", "etc/dracut.conf.d/passthrough-gpu-vfio.conf", None,
     _initramfs.render_dracut(MODS_61), ["dracut", "--regenerate-all", "--force"]),
    ("mkinitcpio", "etc/mkinitcpio.conf", "MODULES=()\n",
     "MODULES=(vfio_pci vfio vfio_iommu_type1 vfio_virqfd)\n", ["mkinitcpio", "-P"]),
])
def test_plan_each_tool(tmp_path, tool, rel, seed, after, argv):
    if seed is not None:
        touch(tmp_path, rel, seed)
    changes = _files.FileChanges()
    _initramfs.plan(changes, str(tmp_path), tool, MODS_61)
    path = str(tmp_path / rel)
    assert changes.changed_paths == [path] and changes.after[path] == after
    assert _initramfs.rebuild_argv(tool) == argv
    changes.apply()
    removal = _files.FileChanges()
    _initramfs.plan(removal, str(tmp_path), tool, None)
    assert removal.after[path] == seed


def test_plan_none_touches_nothing(tmp_path):
    changes = _files.FileChanges()
    _initramfs.plan(changes, str(tmp_path), "none", MODS_61)
    assert not changes.changed and _initramfs.rebuild_argv("none") is None
