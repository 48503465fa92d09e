# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The idempotence matrix (docs/idempotence.md) for every module, in one shape: check -> apply ->
check -> apply with diff on, on a synthetic root or a fake vSphere/virsh (scenarios.py).

Each change-making module must: predict a change in check mode and write nothing; make it; then
report changed=false with an empty diff twice and write nothing more; and its check-mode result
must be the result of the real run (the prediction tells the truth), and for file modules the
diff's "after" must be what is on disk afterwards, file for file. Read-only modules must report
changed=false and write nothing in both modes.
"""

import os

import pytest

import scenarios

MODULES = os.path.join(scenarios.REPO, "plugins", "modules")
# Keys that may differ between the check run and the real run: what was run versus what would
# run (the commands), the module's own invocation, and warnings that say what check mode skipped.
NOT_PREDICTED = {"invocation", "warnings", "commands", "commands_skipped", "diff"}


def run_cycle(case, run_module):
    """check, apply, check, apply (diff on); returns the four results and the state before and
    after each run."""
    results, states = [], [case.state()]
    for check in (True, False, True, False):
        code, result = run_module(case.module, dict(case.args, _ansible_check_mode=check, _ansible_diff=True))
        assert code == 0, result
        results.append(result)
        states.append(case.state())
    return results, states


def diff_entries(result):
    diff = result.get("diff") or []
    return diff if isinstance(diff, list) else [diff]


def changed_files(before, after):
    """Regular files added, removed or rewritten between two tree snapshots (relative paths)."""
    paths = set(before) | set(after)
    return sorted(p for p in paths if before.get(p) != after.get(p)
                  and (before.get(p) or after.get(p))[0] is not None)


def test_every_module_has_a_scenario():
    names = sorted(n[:-3] for n in os.listdir(MODULES) if n.endswith(".py") and not n.startswith("_"))
    covered = set(scenarios.CHANGING) | set(scenarios.READ_ONLY)
    assert len(names) == 12 and set(names) <= covered, sorted(set(names) - covered)


@pytest.mark.parametrize("name", sorted(scenarios.CHANGING))
def test_check_apply_check_apply(name, tree, run_module, monkeypatch):
    case = scenarios.CHANGING[name](tree, monkeypatch)
    results, states = run_cycle(case, run_module)
    assert [r["changed"] for r in results] == [True, True, False, False]
    # check mode wrote nothing; the first apply did; the second run of each kind changed nothing
    assert states[1] == states[0], "check mode changed something"
    assert states[2] != states[1], "the real run changed nothing"
    assert states[4] == states[3] == states[2], "a second run changed something"
    # diff shown in the runs that change, empty in the others
    assert diff_entries(results[0]) and diff_entries(results[1])
    assert not any(e.get("before") != e.get("after") for e in diff_entries(results[2]) + diff_entries(results[3]))
    # the prediction is the real change
    check, apply = results[0], results[1]
    predicted = {k: v for k, v in check.items() if k not in NOT_PREDICTED}
    real = {k: v for k, v in apply.items() if k not in NOT_PREDICTED}
    assert predicted == real
    assert [(e.get("before_header"), e.get("after_header"), e.get("after")) for e in diff_entries(check)] == \
        [(e.get("before_header"), e.get("after_header"), e.get("after")) for e in diff_entries(apply)]


@pytest.mark.parametrize("name", scenarios.FILE_WRITERS)
def test_the_diff_is_what_lands_on_disk(name, tree, run_module, monkeypatch):
    case = scenarios.CHANGING[name](tree, monkeypatch)
    before = case.state()
    code, check = run_module(case.module, dict(case.args, _ansible_check_mode=True, _ansible_diff=True))
    assert code == 0 and case.state() == before
    code, _apply = run_module(case.module, dict(case.args))
    after = case.state()
    assert code == 0
    written = changed_files(before, after)
    assert written == sorted(case.files)
    shown = sorted(e["after_header"].lstrip("/") for e in diff_entries(check))
    assert shown == written, "the diff names other files than those written"
    for entry in diff_entries(check):
        with open(tree.path(entry["after_header"].lstrip("/"))) as handle:
            assert handle.read() == entry["after"]


@pytest.mark.parametrize("name", sorted(scenarios.READ_ONLY))
def test_read_only_modules_never_change(name, tree, run_module, monkeypatch):
    case = scenarios.READ_ONLY[name](tree, monkeypatch)
    before = case.state()
    results = []
    for check in (True, False, True, False):
        code, result = run_module(case.module, dict(case.args, _ansible_check_mode=check, _ansible_diff=True))
        assert code == 0, result
        results.append(result)
        assert case.state() == before, "a read-only module changed something"
    assert [r["changed"] for r in results] == [False] * 4
    assert not any(r.get("diff") for r in results)
    # what they report does not depend on check mode
    strip = NOT_PREDICTED
    assert {k: v for k, v in results[0].items() if k not in strip} == \
        {k: v for k, v in results[1].items() if k not in strip}
