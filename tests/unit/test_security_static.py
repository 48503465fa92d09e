# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The security review's checks that need no lab VM and no simulator (docs/security.md):

- validate_certs is true by default in every vSphere module's argument spec and documentation,
  and in roles/esxi_host;
- no shell strings: no shell=True / use_unsafe_shell / os.system / os.popen in plugins/,
  run_command only with an argv list, no shell or raw task in roles/, playbooks/, site.yml;
- no group- or world-writable file or directory created by the modules that write files, even
  under umask 000, and atomic writes keep an existing file's mode and owner;
- a warning that names the risk for the ACS override and unsafe interrupts.
The -vvv password checks run against the simulator: tests/integration/test_security.py.
"""

import ast
import importlib
import os
import stat
import sys

import pytest
import yaml

from ansible.module_utils import basic

from ansible_collections.passthrough.gpu.plugins.module_utils import _files
from ansible_collections.passthrough.gpu.plugins.modules import iommu_kernel_args

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "matrix_idempotence"))

import scenarios  # noqa: E402  pylint: disable=wrong-import-position

REPO = scenarios.REPO
MODULES = os.path.join(REPO, "plugins", "modules")
PACKAGE = "ansible_collections.passthrough.gpu.plugins.modules."
GROUP_OR_WORLD_WRITABLE = stat.S_IWGRP | stat.S_IWOTH


def module_names():
    return sorted(n[:-3] for n in os.listdir(MODULES) if n.endswith(".py") and not n.startswith("_"))


# --- validate_certs ---------------------------------------------------------------------------


class Captured(Exception):
    pass


def argument_spec(name, monkeypatch):
    """The argument spec main() builds, caught at AnsibleModule() before anything else runs."""
    module = importlib.import_module(PACKAGE + name)
    seen = {}

    def capture(*args, **kwargs):
        seen.update(kwargs.get("argument_spec") or args[0])
        raise Captured()
    monkeypatch.setattr(module, "AnsibleModule", capture)
    with pytest.raises(Captured):
        module.main()
    return seen


def documented_options(name):
    """The module's options with every doc fragment merged in (as ansible-doc shows them)."""
    module = importlib.import_module(PACKAGE + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    options = dict(doc.get("options") or {})
    for fragment in doc.get("extends_documentation_fragment") or []:
        parts = fragment.split(".")
        collection, plugin = parts[:2], parts[2]
        variable = parts[3].upper() if len(parts) > 3 else "DOCUMENTATION"
        source = importlib.import_module("ansible_collections.%s.%s.plugins.doc_fragments.%s"
                                         % (collection[0], collection[1], plugin))
        options.update(yaml.safe_load(getattr(source.ModuleDocFragment, variable)).get("options") or {})
    return options


def vsphere_modules(monkeypatch):
    """The modules that log in to vSphere: they take hostname, username and password."""
    return [n for n in module_names() if {"hostname", "username", "password"} <= set(argument_spec(n, monkeypatch))]


def test_the_vsphere_modules_are_found(monkeypatch):
    assert vsphere_modules(monkeypatch) == ["esxi_passthrough", "esxi_passthrough_info", "esxi_vm_passthrough",
                                            "vm_mmio"]


@pytest.mark.parametrize("name", module_names())
def test_validate_certs_is_true_by_default(name, monkeypatch):
    spec = argument_spec(name, monkeypatch)
    if "password" not in spec:
        assert "validate_certs" not in spec, name
        return
    assert spec["password"].get("no_log") is True, "%s: password is not no_log" % name
    assert "validate_certs" in spec, "%s takes a password but no validate_certs" % name
    assert spec["validate_certs"].get("default") is True, "%s: validate_certs defaults to %r" % (
        name, spec["validate_certs"].get("default"))
    documented = documented_options(name)
    assert documented.get("validate_certs", {}).get("default") is True, \
        "%s documents validate_certs with default %r" % (name, documented.get("validate_certs", {}).get("default"))


def test_esxi_host_role_validates_certificates_by_default():
    """The default reads VMWARE_VALIDATE_CERTS with 'true' when it is unset (rendered for real in
    tests/integration/test_security.py); the argument spec documents the same."""
    with open(os.path.join(REPO, "roles", "esxi_host", "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    expected = "{{ lookup('ansible.builtin.env', 'VMWARE_VALIDATE_CERTS', default='true') | bool }}"
    assert defaults["esxi_host_vcenter_validate_certs"] == expected
    with open(os.path.join(REPO, "roles", "esxi_host", "meta", "argument_specs.yml")) as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert options["esxi_host_vcenter_validate_certs"]["default"] == expected
    assert options["esxi_host_vcenter_validate_certs"]["type"] == "bool"


# --- no shell strings -------------------------------------------------------------------------


def python_files():
    for directory, _dirs, files in os.walk(os.path.join(REPO, "plugins")):
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def is_string(node):
    """Whether an expression builds a string: a literal, an f-string, % formatting, str + str,
    .format() or .join() (a list + a list, a name or a call returning a list are not)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ast.Mod) or is_string(node.left) or is_string(node.right)
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("format", "join")


def shell_findings(path):
    """Every place in one file that hands a command to a shell, or run_command something not a list."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = []
    where = os.path.relpath(path, REPO)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        owner = getattr(func.value, "id", None) if isinstance(func, ast.Attribute) else None
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (isinstance(keyword.value, ast.Constant) and keyword.value.value is False):
                found.append("%s:%d: shell=%s" % (where, node.lineno, ast.unparse(keyword.value)))
            if keyword.arg == "use_unsafe_shell":
                found.append("%s:%d: use_unsafe_shell" % (where, node.lineno))
        if owner == "os" and called in ("system", "popen") or called in ("getoutput", "getstatusoutput"):
            found.append("%s:%d: %s()" % (where, node.lineno, called))
        if called == "run_command" and node.args:
            argv = node.args[0]
            if is_string(argv):
                found.append("%s:%d: run_command(%s)" % (where, node.lineno, ast.unparse(argv)))
    return found


def test_no_shell_strings_in_plugins():
    findings = [f for path in python_files() for f in shell_findings(path)]
    assert findings == []


def test_the_shell_check_finds_shell_strings(tmp_path):
    """The AST check itself: each of these would be a finding."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os, subprocess\n"
                   "module.run_command('update-grub --force')\n"
                   "module.run_command('%s -a' % tool)\n"
                   "module.run_command(f'{tool} -a')\n"
                   "module.run_command(' '.join(argv))\n"
                   "module.run_command('grubby ' + args)\n"
                   "module.run_command(argv, use_unsafe_shell=True)\n"
                   "subprocess.run(argv, shell=True)\n"
                   "os.system('ls')\n")
    good = tmp_path / "good.py"
    good.write_text("module.run_command(['update-grub'])\nmodule.run_command(argv)\nsubprocess.run(argv, shell=False)\n"
                    "module.run_command([tool] + list(argv[1:]))\n")
    assert len(shell_findings(str(bad))) == 8
    assert shell_findings(str(good)) == []


SHELL_MODULES = {"shell", "raw", "script", "ansible.builtin.shell", "ansible.builtin.raw", "ansible.builtin.script",
                 "ansible.legacy.shell", "ansible.legacy.raw", "ansible.legacy.script"}
TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")


def tasks_in(data):
    """Every task (a dict) in a playbook or tasks file, blocks included."""
    if isinstance(data, list):
        for item in data:
            yield from tasks_in(item)
    elif isinstance(data, dict):
        if not any(k in data for k in ("hosts", "import_playbook", "ansible.builtin.import_playbook")) \
                and not any(k in data for k in ("block",)):
            yield data
        for key in TASK_LISTS:
            if key in data:
                yield from tasks_in(data[key])


def yaml_task_files():
    files = [os.path.join(REPO, "site.yml")]
    for top in ("roles", "playbooks"):
        for directory, _dirs, names in os.walk(os.path.join(REPO, top)):
            if os.sep + "templates" in directory or os.sep + "meta" in directory \
                    or os.sep + "defaults" in directory or os.sep + "vars" in directory:
                continue
            files += [os.path.join(directory, n) for n in sorted(names) if n.endswith((".yml", ".yaml"))]
    return files


def test_no_shell_or_raw_tasks():
    files = yaml_task_files()
    assert any(f.endswith("roles/kvm_host/tasks/main.yml") for f in files) and len(files) > 10
    found = []
    for path in files:
        with open(path) as handle:
            data = yaml.safe_load(handle)
        where = os.path.relpath(path, REPO)
        for task in tasks_in(data):
            for key in set(task) & SHELL_MODULES:
                found.append("%s: %r uses %s" % (where, task.get("name"), key))
            for key in ("command", "ansible.builtin.command", "ansible.legacy.command"):
                if isinstance(task.get(key), str):
                    found.append("%s: %r: free-form command %r" % (where, task.get("name"), task[key]))
                elif isinstance(task.get(key), dict) and "cmd" in task[key]:
                    found.append("%s: %r: command with a cmd string, not argv" % (where, task.get("name")))
    assert found == []


# --- file modes -------------------------------------------------------------------------------


def modes(root):
    """{relative path: (kind, mode, uid, gid)} of every file and directory (links not followed)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(directory, name)
            info = os.lstat(full)
            if not stat.S_ISLNK(info.st_mode):
                kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
                found[os.path.relpath(full, root)] = (kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return found


@pytest.fixture
def permissive_umask():
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.parametrize("name", scenarios.FILE_WRITERS)
def test_no_group_or_world_writable_file_even_under_umask_000(name, tree, run_module, monkeypatch):
    case = scenarios.CHANGING[name](tree, monkeypatch)
    for rel in case.files:  # the ones that exist keep a private mode of their own
        if os.path.exists(tree.path(rel)):
            os.chmod(tree.path(rel), 0o640)
    before = modes(tree.root)
    old = os.umask(0)
    try:
        code, result = run_module(case.module, dict(case.args))
    finally:
        os.umask(old)
    assert code == 0 and result["changed"] is True, result
    after = modes(tree.root)
    new = sorted(p for p in after if p not in before)
    assert set(case.files) - set(before) <= set(new)
    problems = []
    for rel in new:
        kind, mode = after[rel][:2]
        wanted = 0o755 if kind == "dir" else 0o644
        if mode != wanted:
            problems.append("new %s %s has mode %04o, not %04o" % (kind, rel, mode, wanted))
    for rel in before:
        if rel in after and after[rel] != before[rel] and after[rel][0] == "file":
            problems.append("%s was %04o uid %d gid %d, now %04o uid %d gid %d"
                            % ((rel,) + before[rel][1:] + after[rel][1:]))
    for rel, (kind, mode, _uid, _gid) in after.items():
        if mode & GROUP_OR_WORLD_WRITABLE and (rel not in before or before[rel][1] != mode):
            problems.append("%s %s is group/world-writable (%04o)" % (kind, rel, mode))
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("mover", [None, "atomic_move"])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o755])
def test_atomic_write_keeps_mode_and_owner(tmp_path, mode, mover, permissive_umask):
    path = tmp_path / "etc" / "default" / "grub"
    path.parent.mkdir(parents=True)
    path.write_text("old\n")
    os.chmod(str(path), mode)
    owner = os.stat(str(path)).st_uid, os.stat(str(path)).st_gid
    move = None
    if mover:
        module = basic.AnsibleModule.__new__(basic.AnsibleModule)  # atomic_move needs no arguments
        module.check_mode = False
        module._diff = False  # pylint: disable=protected-access
        module.selinux_enabled = lambda: False
        module.set_context_if_different = lambda *args, **kwargs: False
        move = module.atomic_move
    _files.write_atomic(str(path), "new\n", mover=move)
    info = os.stat(str(path))
    assert path.read_text() == "new\n"
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode,) + owner
    assert sorted(os.listdir(str(path.parent))) == ["grub"]  # no temporary file left


# --- warnings for weaker isolation ------------------------------------------------------------


@pytest.mark.parametrize("arg, risk", [
    ("pcie_acs_override=downstream,multifunction", ("IOMMU groups", "memory")),
    ("vfio_iommu_type1.allow_unsafe_interrupts=1", ("interrupt", "remapping")),
])
@pytest.mark.parametrize("check_mode", [True, False])
def test_weaker_isolation_is_warned_about_with_the_risk(tree, run_module, monkeypatch, arg, risk, check_mode):
    case = scenarios.iommu_kernel_args_case(tree, monkeypatch)
    code, result = run_module(iommu_kernel_args, dict(case.args, args=[arg], _ansible_check_mode=check_mode))
    assert code == 0 and result["changed"] is True
    key = arg.split("=")[0]
    warned = [w for w in result["warnings"] if key in w]
    assert len(warned) == 1, result["warnings"]
    assert all(word in warned[0] for word in risk), warned[0]


def test_no_isolation_warning_without_those_arguments(tree, run_module, monkeypatch):
    case = scenarios.iommu_kernel_args_case(tree, monkeypatch)
    code, result = run_module(iommu_kernel_args, dict(case.args, args=["video=efifb:off"]))
    assert code == 0 and not any("pcie_acs_override" in w or "unsafe_interrupts" in w for w in result["warnings"])


def test_removing_the_acs_override_is_not_warned_about(tree, run_module, monkeypatch):
    case = scenarios.iommu_kernel_args_case(tree, monkeypatch)
    tree.write("etc/default/grub", 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on pcie_acs_override=downstream"\n')
    code, result = run_module(iommu_kernel_args, dict(case.args, args=["pcie_acs_override"], state="absent"))
    assert code == 0 and result["changed"] is True and result["warnings"] == []
