# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/execution-environment.yml: ansible-builder writes a complete build context, offline.

`ansible-builder create` only writes files (no container engine, no registry); `build` would pull
images and packages and is not run here. The dependency scan the build runs inside the image
(ansible-builder's introspect.py) is run here on the collections the Galaxy stage would install.
"""

import ast
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import BIN, REPO

META = os.path.join(REPO, "meta")
SITE_PACKAGES_COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(yaml.__file__)), "ansible_collections")


def offline(argv):
    """argv in a network namespace of its own (no network at all) when the kernel allows one:
    proof that it fetches nothing. Plain argv otherwise."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False) \
        if shutil.which("unshare") else None
    return (["unshare", "-rn"] + argv) if probe is not None and probe.returncode == 0 else argv


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """The build context, made the documented way: the collection tarball next to meta/."""
    work = tmp_path_factory.mktemp("ee")
    shutil.copytree(META, work / "meta")
    proc = subprocess.run(offline([os.path.join(BIN, "ansible-galaxy"), "collection", "build", REPO,
                                   "--output-path", str(work)]),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tarballs = [name for name in os.listdir(work) if name.startswith("passthrough-gpu-")]
    assert len(tarballs) == 1, tarballs
    proc = subprocess.run(offline([os.path.join(BIN, "ansible-builder"), "create",
                                   "-f", str(work / "meta" / "execution-environment.yml"),
                                   "-c", str(work / "context"), "--output-filename", "Containerfile"]),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No matches" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return work / "context", tarballs[0]


def test_definition_is_schema_3_and_lists_only_files_that_exist():
    with open(os.path.join(META, "execution-environment.yml")) as handle:
        definition = yaml.safe_load(handle)
    assert definition["version"] == 3
    for key in ("python", "system"):
        assert os.path.isfile(os.path.join(META, definition["dependencies"][key]))


def test_context_has_containerfile_and_requirements(context):
    ctx, tarball = context
    containerfile = (ctx / "Containerfile").read_text()
    assert "FROM $EE_BASE_IMAGE AS base" in containerfile
    assert 'ANSIBLE_INSTALL_REFS="ansible-core>=2.19,<2.20 ansible-runner' in containerfile
    assert "introspect.py introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in containerfile
    # passthrough.gpu itself is installed in the final stage, from the tarball in the context.
    assert "ansible-galaxy collection install --offline --no-deps" in containerfile
    assert (ctx / "_build" / "passthrough-gpu" / tarball).is_file()
    # The requirement files are copied as they are.
    for copied, original in (("requirements.txt", "ee-requirements.txt"), ("bindep.txt", "ee-bindep.txt")):
        assert (ctx / "_build" / copied).read_text() == open(os.path.join(META, original)).read()
    galaxy = yaml.safe_load((ctx / "_build" / "requirements.yml").read_text())
    assert {c["name"] for c in galaxy["collections"]} == {"vmware.vmware", "awx.awx"}


def test_dependency_scan_gives_the_collections_needs(context, tmp_path):
    """introspect.py as the build runs it, on the collections the Galaxy stage installs (from the
    ansible package here): the ESXi modules' pyVmomi and requests, and vmware.vmware's own."""
    ctx = context[0]
    collections = tmp_path / "ansible_collections"
    for namespace, name in (("vmware", "vmware"), ("awx", "awx")):
        shutil.copytree(os.path.join(SITE_PACKAGES_COLLECTIONS, namespace, name), collections / namespace / name)
    proc = subprocess.run(offline([sys.executable, str(ctx / "_build" / "scripts" / "introspect.py"), "introspect",
                                   str(tmp_path), "--user-pip", str(ctx / "_build" / "requirements.txt"),
                                   "--user-bindep", str(ctx / "_build" / "bindep.txt"),
                                   "--write-pip", str(tmp_path / "pip.txt"),
                                   "--write-bindep", str(tmp_path / "bindep.txt")]),
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pip = (tmp_path / "pip.txt").read_text()
    for requirement in ("pyVmomi>=8.0.3  # from collection user", "requests>=2.28  # from collection user",
                        "# from collection vmware.vmware"):
        assert requirement in pip, pip
    assert "openssh-clients [platform:rpm]" in (tmp_path / "bindep.txt").read_text()


def test_modules_import_only_what_the_ee_installs():
    """Every third-party import of the collection's plugins is in ee-requirements.txt (or comes with
    ansible-core: jinja2), so the EE cannot miss one silently."""
    known = {"pyVmomi": "pyvmomi", "pyVim": "pyvmomi", "requests": "requests"}
    with open(os.path.join(META, "ee-requirements.txt")) as handle:
        listed = {line.split(">")[0].split("=")[0].strip().lower() for line in handle
                  if line.strip() and not line.startswith("#")}
    stdlib = set(sys.stdlib_module_names) | {"ansible", "ansible_collections", "__future__", "jinja2"}
    for folder, _dirs, files in os.walk(os.path.join(REPO, "plugins")):
        for name in files:
            if not name.endswith(".py"):
                continue
            with open(os.path.join(folder, name)) as handle:
                tree = ast.parse(handle.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    tops = [alias.name.split(".")[0] for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    tops = [node.module.split(".")[0]]
                else:
                    continue
                for top in tops:
                    if top not in stdlib:
                        assert known.get(top, top).lower() in listed, "%s imports %s" % (name, top)
