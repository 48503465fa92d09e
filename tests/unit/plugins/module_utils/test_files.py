# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import stat

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _files


def test_read_text_absent_and_binary(tmp_path):
    assert _files.read_text(str(tmp_path / "nope")) is None
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(_files.FileError, match="is not UTF-8 text"):
        _files.read_text(str(tmp_path / "bin"))


def test_write_atomic_keeps_mode_and_leaves_no_temp(tmp_path):
    target = tmp_path / "grub"
    target.write_text("old\n")
    os.chmod(str(target), 0o600)
    _files.write_atomic(str(target), "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(str(tmp_path)) == ["grub"]


def test_new_files_are_not_world_writable(tmp_path):
    target = tmp_path / "etc" / "modprobe.d" / "vfio.conf"
    _files.write_atomic(str(target), "x\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_atomic_cleans_up_when_the_move_fails(tmp_path):
    def broken(src, dest):
        raise OSError("disk full")

    target = tmp_path / "f"
    target.write_text("old")
    with pytest.raises(OSError):
        _files.write_atomic(str(target), "new", mover=broken)
    assert target.read_text() == "old" and os.listdir(str(tmp_path)) == ["f"]


def test_changes_diff_apply_restore(tmp_path):
    edited, created, removed = tmp_path / "a", tmp_path / "d" / "b", tmp_path / "c"
    edited.write_text("1\n")
    removed.write_text("gone\n")
    changes = _files.FileChanges()
    assert changes.want(str(edited), "2\n") is True
    assert changes.want(str(created), "new\n") is True
    assert changes.want(str(removed), None) is True
    assert changes.want(str(tmp_path / "same"), None) is False
    diff = changes.diff(display_root=str(tmp_path))
    assert [(d["before_header"], d["after_header"]) for d in diff] == [
        ("/a", "/a"), ("/c", "/c (absent)"), ("/d/b (absent)", "/d/b")]
    changes.apply()
    assert edited.read_text() == "2\n" and created.read_text() == "new\n" and not removed.exists()
    changes.restore()
    assert edited.read_text() == "1\n" and not created.exists() and removed.read_text() == "gone\n"


def test_unchanged_files_are_not_written(tmp_path):
    target = tmp_path / "a"
    target.write_text("same\n")
    before = target.stat().st_mtime_ns
    changes = _files.FileChanges()
    assert changes.want(str(target), "same\n") is False
    changes.apply()
    assert changes.changed is False and changes.diff() == [] and target.stat().st_mtime_ns == before


def test_apply_failure_restores_what_was_written(tmp_path):
    first, blocked = tmp_path / "a", tmp_path / "ro" / "b"
    first.write_text("1\n")
    (tmp_path / "ro").mkdir()
    blocked.write_text("x\n")
    calls = []

    def mover(src, dest):
        calls.append(dest)
        if dest == str(blocked):
            raise OSError("read-only file system")
        os.rename(src, dest)

    changes = _files.FileChanges(mover=mover)
    changes.want(str(first), "2\n")
    changes.want(str(blocked), "y\n")
    with pytest.raises(_files.FileError, match="cannot write .*ro/b: read-only file system"):
        changes.apply()
    assert first.read_text() == "1\n" and blocked.read_text() == "x\n"


def test_pending_marks_clears_and_survives_a_new_instance(tmp_path):
    pending = _files.Pending(str(tmp_path), "vfio_bind-initramfs")
    assert pending.due is False
    pending.clear()  # nothing to clear is fine
    pending.mark([["update-initramfs", "-u", "-k", "all"]], ["/etc/initramfs-tools/modules"])
    marker = tmp_path / "var" / "lib" / "passthrough-gpu" / "vfio_bind-initramfs.pending"
    assert marker.is_file() and stat.S_IMODE(marker.stat().st_mode) == 0o644
    text = marker.read_text()
    assert "command update-initramfs -u -k all\n" in text and "file /etc/initramfs-tools/modules\n" in text
    assert _files.Pending(str(tmp_path), "vfio_bind-initramfs").due is True  # what the next run sees
    assert _files.Pending(str(tmp_path), "other").due is False
    pending.clear()
    assert pending.due is False and os.listdir(str(marker.parent)) == []


def test_pending_mark_failure_is_a_file_error(tmp_path):
    (tmp_path / "var").write_text("a file where a directory should be")
    with pytest.raises(_files.FileError, match="cannot write .*vfio_bind-initramfs.pending"):
        _files.Pending(str(tmp_path), "vfio_bind-initramfs").mark([["true"]], [])


def test_new_files_and_dirs_are_0644_and_0755_under_umask_0_with_atomic_move_semantics(tmp_path):
    def atomic_move_like(src, dest):
        # what AnsibleModule.atomic_move does for a file that did not exist: 0666 minus the umask
        creating = not os.path.exists(dest)
        os.rename(src, dest)
        if creating:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(dest, 0o666 & ~umask)

    old = os.umask(0)
    try:
        target = tmp_path / "etc" / "systemd" / "system" / "x.mount"
        _files.write_atomic(str(target), "x\n", mover=atomic_move_like)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    for directory in (tmp_path / "etc", tmp_path / "etc" / "systemd", target.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o755, directory
