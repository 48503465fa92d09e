#!/usr/bin/env bash
# Run `ansible-test sanity` on this collection (the repository root is passthrough.gpu).
#
# - ansible-test wants the collection at .../ansible_collections/passthrough/gpu, so the tracked
#   and untracked-but-not-ignored files are mirrored into .build/sanity/ansible_collections/
#   passthrough/gpu (tools/sanity/sync_tree.py; stale files are deleted) and it runs there.
# - `--venv`: ansible-test makes its own venvs (one to run in, one per sanity test) and installs
#   the pinned sanity requirements from PyPI. It bootstraps pip in each with a get-pip script
#   it would download from ci-files.testing.ansible.com (unreachable); tools/sanity/get_pip.py,
#   which takes pip from Python's bundled ensurepip wheel, is put in its download cache instead.
# - Caches: ansible-test keeps its sanity venvs and that script under ~/.ansible/test, pip keeps
#   ~/.cache/pip, so HOME is .cache/sanity/home while it runs. The venv ansible-test itself runs
#   in stays in .build/sanity/.../tests/output/.tmp. Both directories are git-ignored.
# - Only Python 3.11 exists here: compile and import run on 3.11 only.
# - Fails if a test fails, is skipped for a reason other than "nothing to check" (a missing tool
#   or interpreter), if shellcheck did not run, or if a tests/sanity/ignore-*.txt exists.
#
# Environment: SANITY_ARGS adds ansible-test options (e.g. SANITY_ARGS="--test pylint -v").
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python_version=3.11
coll_rel=.build/sanity/ansible_collections/passthrough/gpu
coll=$repo/$coll_rel
log=$repo/.build/sanity/sanity.log
start=$SECONDS

[ -x .venv/bin/ansible-test ] || bash tools/bootstrap.sh
command -v shellcheck >/dev/null || bash tools/bootstrap.sh  # the shellcheck test needs it
command -v shellcheck >/dev/null || { echo "sanity: FAILED: shellcheck is not installed" >&2; exit 1; }

ignore_files=$(git ls-files -co --exclude-standard | grep -E '^tests/sanity/ignore-[^/]*\.txt$' | tr '\n' ' ' || true)
if [ -n "$ignore_files" ]; then
  echo "sanity: FAILED: sanity ignore files are not allowed, fix the findings instead: $ignore_files" >&2
  exit 1
fi

# 1. the collection tree ansible-test sees
mkdir -p "$coll"
git ls-files -z -co --exclude-standard | .venv/bin/python tools/sanity/sync_tree.py "$repo" "$coll"
# ansible-test takes its file list from the nearest git work tree above the collection; without
# one here that is this repository, which ignores .build, and it would find no files at all.
# An empty repository is enough: ansible-test lists tracked and untracked-not-ignored files.
[ -d "$coll/.git" ] || git -c init.defaultBranch=main init -q "$coll"
rm -rf "$coll/tests/output/junit" "$coll/tests/output/bot"  # results of the previous run
# Collections ours depends on (galaxy.yml) sit beside it, as ansible-test looks for them there:
# vmware.vmware, from the ansible package in .venv.
dep_src=$(.venv/bin/python -c 'import ansible_collections.vmware.vmware as m; print(list(m.__path__)[0])')
dep_dst=$repo/.build/sanity/ansible_collections/vmware/vmware
if ! cmp -s "$dep_src/MANIFEST.json" "$dep_dst/MANIFEST.json"; then
  rm -rf "$dep_dst" && mkdir -p "$(dirname "$dep_dst")" && cp -r "$dep_src" "$dep_dst"
fi

# 2. a home for ansible-test's caches; pip still reads the user's configuration
[ -n "${XDG_CONFIG_HOME:-}" ] || export XDG_CONFIG_HOME="$HOME/.config"
if [ -z "${PIP_CONFIG_FILE:-}" ] && [ -f "$HOME/.pip/pip.conf" ]; then
  export PIP_CONFIG_FILE="$HOME/.pip/pip.conf"
fi
export HOME="$repo/.cache/sanity/home"

# 3. the get-pip script ansible-test would download, for each pip version it pins
at_root=$(.venv/bin/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
pip_versions=$(grep -oE "pip='[0-9][0-9.]*'" "$at_root/_internal/python_requirements.py" | cut -d"'" -f2 | sort -u)
if [ -z "$pip_versions" ]; then
  echo "sanity: FAILED: no pip version found in $at_root/_internal/python_requirements.py" \
    "(ansible-test changed how it bootstraps pip; update tools/sanity.sh)" >&2
  exit 1
fi
mkdir -p "$HOME/.ansible/test/cache"
for v in $pip_versions; do
  target="$HOME/.ansible/test/cache/get_pip_${v//./_}.py"
  cmp -s tools/sanity/get_pip.py "$target" || cp tools/sanity/get_pip.py "$target"
done

# 4. run it
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH ANSIBLE_COLLECTIONS_PATHS
# shellcheck disable=SC2206  # SANITY_ARGS is a list of options
cmd=("$repo/.venv/bin/ansible-test" sanity --venv --python "$python_version" --color no --junit ${SANITY_ARGS:-})
echo "sanity: (cd $coll_rel && ${cmd[*]#"$repo/"})"
rc=0
(cd "$coll" && "${cmd[@]}" </dev/null) 2>&1 | tee "$log" || rc=$?

# 5. what ran, what did not and why, and a clear last line
echo
required=(shellcheck)                   # must have run: ansible-test skips it without the tool
[ -z "${SANITY_ARGS:-}" ] || required=()  # unless only some tests were asked for
summary_rc=0
.venv/bin/python tools/sanity/summary.py "$coll/tests/output/junit" "${required[@]}" || summary_rc=$?
[ "$rc" -ne 0 ] || rc=$summary_rc
echo "sanity: compile/import checked on Python $python_version only (no other Python here)"
elapsed=$((SECONDS - start))
if [ "$rc" -eq 0 ]; then
  echo "sanity: PASSED: ansible-test sanity, 0 errors (${elapsed}s)"
else
  echo "sanity: FAILED: ansible-test sanity (exit $rc, ${elapsed}s; log: ${log#"$repo/"})"
fi
exit "$rc"
