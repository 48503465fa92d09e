"""Mirror a list of repository files into a directory (used by tools/sanity.sh).

Usage: git ls-files -z -co --exclude-standard | python3 sync_tree.py SRC DEST

Copies each listed file from SRC to DEST (symlinks stay symlinks; contents, mode and mtime are
kept), only when it differs, and deletes everything else in DEST, so removed or newly ignored
files disappear. DEST/tests/output (ansible-test's results and its cached venv) is kept.
Listed paths that no longer exist (deleted but not yet committed) are skipped.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys

KEEP = ('.git', 'tests/output')


def same(src: str, dst: str) -> bool:
    """Return True if dst is already an identical copy of src."""
    if os.path.islink(src) or os.path.islink(dst):
        return os.path.islink(src) and os.path.islink(dst) and os.readlink(src) == os.readlink(dst)

    if not os.path.isfile(dst):
        return False

    src_st, dst_st = os.stat(src), os.stat(dst)

    return src_st.st_mode == dst_st.st_mode and filecmp.cmp(src, dst, shallow=False)


def main() -> None:
    """Synchronize DEST with the listed files of SRC."""
    src_root, dst_root = sys.argv[1:3]
    names = {name for name in sys.stdin.buffer.read().decode().split('\0') if name}
    wanted = {name for name in names if os.path.lexists(os.path.join(src_root, name))}
    wanted_dirs = {os.path.dirname(name) for name in wanted}

    for name in list(wanted_dirs):
        while name:
            name = os.path.dirname(name)
            wanted_dirs.add(name)

    # collect what DEST holds (not descending into KEEP), then delete the unwanted, deepest first
    existing = []

    for root, dirs, files in os.walk(dst_root):
        rel_root = os.path.relpath(root, dst_root)
        rel_root = '' if rel_root == '.' else rel_root
        dirs[:] = [name for name in dirs if os.path.join(rel_root, name) not in KEEP]
        existing.extend(os.path.join(rel_root, name) for name in files + dirs)

    for rel in reversed(existing):
        path = os.path.join(dst_root, rel)

        if os.path.islink(path) or not os.path.isdir(path):
            if rel not in wanted:
                os.unlink(path)
        elif rel not in wanted_dirs and not any(keep.startswith(rel + '/') for keep in KEEP):
            shutil.rmtree(path)

    copied = 0

    for name in sorted(wanted):
        src, dst = os.path.join(src_root, name), os.path.join(dst_root, name)

        if same(src, dst):
            continue

        os.makedirs(os.path.dirname(dst), exist_ok=True)

        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                shutil.rmtree(dst)
            else:
                os.unlink(dst)

        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)

        copied += 1

    print(f'sanity: {len(wanted)} files in {dst_root} ({copied} updated)')


if __name__ == '__main__':
    main()
