# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print the Linux rows of docs/bad_inputs.md from the matrix, with each module's real message.

Run from the repository root: ``.venv/bin/python tests/unit/matrix/render_table.py [--write]``;
``--write`` replaces the table in the document (test_bad_inputs_linux.py checks that every case
id is in it).
"""

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
COLLECTIONS = os.path.join(REPO, ".build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "passthrough", "gpu")
if not os.path.lexists(LINK):  # as tests/conftest.py and `make link` do
    os.makedirs(os.path.dirname(LINK))
    os.symlink(REPO, LINK)
sys.path[:0] = [HERE, os.path.dirname(HERE), COLLECTIONS]

from ansible.module_utils import basic  # noqa: E402  pylint: disable=wrong-import-position
from ansible.module_utils.testing import patch_module_args  # noqa: E402  pylint: disable=wrong-import-position

from sysfs_tree import SysfsTree  # noqa: E402  pylint: disable=wrong-import-position
from test_bad_inputs_linux import CASES, build_host  # noqa: E402  pylint: disable=wrong-import-position


def message(module, args, setup):
    root = tempfile.mkdtemp(prefix="bad-input-")
    try:
        tree = build_host(SysfsTree(root))
        if setup:
            setup(tree)
        args = dict(args)
        args["root"] = root + args["root"][1:] if str(args.get("root", "")).startswith("@") else root
        out = io.StringIO()
        with patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                module.main()
            except SystemExit:
                pass
        return json.loads(out.getvalue())["msg"].replace(root, "<root>")
    finally:
        shutil.rmtree(root)


def situation(setup):
    """The host the case runs on, in words (the lab tree unless the case changes it)."""
    if setup is None:
        return "lab tree"
    return getattr(setup, "what", None) or (setup.__doc__ or setup.__name__).strip().splitlines()[0]


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", "\\n")


def table():
    basic.AnsibleModule.run_command = lambda self, argv, *a, **k: (1, "", "no command may run")
    basic.AnsibleModule.get_bin_path = lambda self, name, required=False, opt_dirs=None: "/usr/bin/" + name
    lines = ["| case | module | arguments | host | message |", "|---|---|---|---|---|"]
    for case_id, module, args, setup, _regex in CASES:
        name = module.__name__.rsplit(".", 1)[-1]
        shown = ", ".join("%s=%s" % (k, json.dumps(v)) for k, v in sorted(args.items()) if k != "root")
        shown = "`%s`" % cell(shown) if shown else "(defaults)"
        row = (case_id, name, shown, cell(situation(setup)), cell(message(module, args, setup)))
        lines.append("| `%s` | %s | %s | %s | %s |" % row)
    return lines


def main():
    """Print the table; with ``--write``, replace the one under "## Linux modules" in docs/bad_inputs.md."""
    lines = table()
    if sys.argv[1:] != ["--write"]:
        print("\n".join(lines))
        return
    page = os.path.join(REPO, "docs", "bad_inputs.md")
    with open(page) as handle:
        text = handle.read().split("\n")
    start = text.index("## Linux modules") + 2
    end = start
    while end < len(text) and text[end].startswith("|"):
        end += 1
    with open(page, "w") as handle:
        handle.write("\n".join(text[:start] + lines + text[end:]))


if __name__ == "__main__":
    main()
