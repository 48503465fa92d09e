# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures: sysfs trees in tmp_path and a module runner."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def tree(tmp_path):
    from sysfs_tree import SysfsTree  # pylint: disable=import-outside-toplevel

    return SysfsTree(str(tmp_path))


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run a module's main() with arguments; return (exit code, result dict)."""
    import json  # pylint: disable=import-outside-toplevel

    from ansible.module_utils import _internal  # pylint: disable=import-outside-toplevel

    # Importing controller code (a filter plugin's ansible.errors) marks the whole process as the
    # controller, and module warnings would then go to the display instead of the result.
    monkeypatch.setattr(_internal, "is_controller", False)

    from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel

    from ansible.module_utils.common import warnings  # pylint: disable=import-outside-toplevel

    def run(module, args):
        # Warnings are kept per process; a module run starts with none.
        warnings._global_warnings.clear()  # pylint: disable=protected-access
        with patch_module_args(args):
            with pytest.raises(SystemExit) as exited:
                module.main()
        result = json.loads(capsys.readouterr().out)
        # ansible-core 2.19 sends warnings as structured summaries; tests compare their text.
        result["warnings"] = [w["event"]["msg"] if isinstance(w, dict) else w
                              for w in result.get("warnings", [])]
        return exited.value.code, result

    return run
