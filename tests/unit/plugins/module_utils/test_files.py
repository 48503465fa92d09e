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
