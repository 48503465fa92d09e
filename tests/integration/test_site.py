# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""site.yml and the default inventory: they parse, and group_vars document every role variable."""

import os
import re
import subprocess

import pytest
import yaml

from helpers import BIN, REPO, ansible_env

ROLES = {"kvm_hosts": "kvm_host", "proxmox_hosts": "proxmox_host", "esxi_hosts": "esxi_host"}


def role_options(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["argument_specs"]["main"]["options"]


@pytest.mark.parametrize("group", sorted(ROLES))
def test_group_vars_name_every_role_variable(group):
    path = os.path.join(REPO, "inventory", "group_vars", "%s.yml" % group)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    named = set(re.findall(r"^(?:# )?([a-z_]+):", text, re.M))
    missing = sorted(set(role_options(ROLES[group])) - named)
    assert not missing, "%s does not document %s" % (path, missing)
    values = yaml.safe_load(text)
    unknown = sorted(set(values) - set(role_options(ROLES[group])))
    assert not unknown, "%s sets variables the role does not have: %s" % (path, unknown)


def test_inventory_has_the_three_groups():
    proc = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", "inventory/lab.yml", "--list"], cwd=REPO,
                          env=ansible_env(), capture_output=True, text=True, timeout=120, check=True)
    inventory = yaml.safe_load(proc.stdout)
    for group in ROLES:
        assert inventory[group]["hosts"], group


def test_site_syntax():
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "inventory/lab.yml", "--syntax-check",
                           "site.yml"], cwd=REPO, env=ansible_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
