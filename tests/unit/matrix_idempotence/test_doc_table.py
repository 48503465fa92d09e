# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""docs/idempotence.md cannot rot: every module and role has a row with every column filled, and
every test it names (``path::test[param]``) and every file it cites exists."""

import ast
import os
import re

import pytest

import scenarios

REPO = scenarios.REPO
DOC = os.path.join(REPO, "docs", "idempotence.md")
ROLES = ("esxi_host", "kvm_host", "proxmox_host")
COLUMNS = ["Prediction = change", "Second run changed=0", "Diff shown", "Where"]


def doc_text():
    with open(DOC) as handle:
        return handle.read()


def table_rows(text):
    """{first cell: [other cells]} of every table row (header and separator rows left out)."""
    rows = {}
    for line in text.splitlines():
        if not line.startswith("|") or set(line) <= set("|-: "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.setdefault(cells[0], []).append(cells[1:])
    return rows


def references(text):
    """Every backticked repository path, with or without ``::test``."""
    return sorted(set(m for m in re.findall(r"`([^`\s]+)`", text) if m.startswith(("tests/", "extensions/", "docs/"))))


def defined_tests(path):
    """Names of the test functions (and Class::method) defined in a test file."""
    with open(os.path.join(REPO, path)) as handle:
        tree = ast.parse(handle.read())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update("%s::%s" % (node.name, f.name) for f in node.body if isinstance(f, ast.FunctionDef))
    return names


def modules():
    folder = os.path.join(REPO, "plugins", "modules")
    return sorted(n[:-3] for n in os.listdir(folder) if n.endswith(".py") and not n.startswith("_"))


def test_every_module_and_role_has_a_full_row():
    rows = table_rows(doc_text())
    assert rows.get("Module") == [COLUMNS] and rows.get("Role") == [COLUMNS]
    wanted = modules() + sorted(os.listdir(os.path.join(REPO, "roles")))
    assert len(modules()) == 12 and sorted(os.listdir(os.path.join(REPO, "roles"))) == list(ROLES)
    for name in wanted:
        assert name in rows, "docs/idempotence.md has no row for %s" % name
        assert len(rows[name]) == 1, "%s has %d rows" % (name, len(rows[name]))
        cells = rows[name][0]
        assert len(cells) == len(COLUMNS) and all(cells), "%s: a column is empty: %r" % (name, cells)
        # the first three columns name a test (read-only modules: "same" / "no diff" after the first)
        assert "`tests/" in cells[0], "%s names no test for its prediction" % name
    assert set(rows) - {"Module", "Role"} == set(wanted), "rows for things that do not exist"


def test_every_named_test_and_file_exists():
    refs = references(doc_text())
    assert len(refs) > 30
    missing = []
    for ref in refs:
        path, _sep, test = ref.partition("::")
        exists = os.path.isfile if test else os.path.exists  # a test is in a file; a citation may be a folder
        if not exists(os.path.join(REPO, path)):
            missing.append("%s: no such file" % ref)
            continue
        if test:
            base = test.split("[", 1)[0]
            if base not in defined_tests(path):
                missing.append("%s: no test %s in %s" % (ref, base, path))
    assert missing == []


@pytest.mark.parametrize("ref", [r for r in references(doc_text()) if "test_idempotence.py::" in r and "[" in r])
def test_parametrized_ids_exist(ref):
    """The matrix ids named in the doc are scenarios of test_idempotence.py."""
    test, param = re.match(r".*::(\w+)\[(\w+)\]$", ref).groups()
    if test == "test_read_only_modules_never_change":
        assert param in scenarios.READ_ONLY
    elif test == "test_the_diff_is_what_lands_on_disk":
        assert param in scenarios.FILE_WRITERS
    else:
        assert test == "test_check_apply_check_apply" and param in scenarios.CHANGING


def test_the_parser_sees_a_broken_reference(tmp_path):
    text = ("| Module | a | b | c | d |\n|---|---|---|---|---|\n"
            "| vm_mmio | `tests/unit/matrix_idempotence/test_idempotence.py::no_such_test` | x | y | z |\n")
    rows = table_rows(text)
    assert rows["vm_mmio"] == [["`tests/unit/matrix_idempotence/test_idempotence.py::no_such_test`", "x", "y", "z"]]
    [ref] = references(text)
    assert "no_such_test" not in defined_tests(ref.split("::")[0])
