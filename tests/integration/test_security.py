# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Security review, the parts that need ansible-playbook (docs/security.md; the static parts are
tests/unit/test_security_static.py):

- every ESXi module (info, passthrough in check mode and for real, the VM modules), a failed login
  and the esxi_host role run with -vvv against the simulator with a distinctive password, and the
  password appears nowhere in what ansible prints: not as is, not URL-quoted, not base64, not
  XML-escaped;
- the AWX playbook with -vvv: neither the controller password nor an OAuth token is printed;
- esxi_host verifies certificates when nothing says otherwise: it fails on the simulator's
  self-signed certificate and works once the CA is trusted;
- kvm_host with the ACS override and unsafe interrupts prints the risk of each.

The simulator listens on 127.0.0.2: pyVmomi skips certificate checks for 127.0.0.1.
"""

import base64
import json
import os
import sys
from html import escape
from urllib.parse import quote, quote_plus

import pytest
from pyVim.connect import Disconnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from helpers import REPO, run_playbook
from vcsim import Vcsim, find

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import test_awx_job_templates as awx_tests  # noqa: E402  pylint: disable=wrong-import-position
from kvm_host_noop import synthetic_host  # noqa: E402  pylint: disable=wrong-import-position
from test_awx_job_templates import awx  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

# Characters that URL-quoting, base64 and XML escaping all change, so each encoding is a distinct string.
PASSWORD = "Sec/Rev w0rd&<x>=%7f+3a!"
WRONG_PASSWORD = "N0t/the pa55&word=%9e+1"
USER = "sec-review"
A100, T4 = "0000:3b:00.0", "0000:af:00.0"
HOST, VM = "DC0_H0", "DC0_H0_VM0"
MASK = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def encodings(secret):
    """The secret as ansible, HTTP or SOAP could print it."""
    raw = secret.encode()
    return {"plain": secret, "url": quote(secret, safe=""), "url_plus": quote_plus(secret),
            "base64": base64.b64encode(raw).decode(), "base64_url": base64.urlsafe_b64encode(raw).decode(),
            "xml": escape(secret), "json": json.dumps(secret)[1:-1]}


def leaks(output, *secrets):
    return ["%s (%s)" % (secret, kind) for secret in secrets for kind, form in encodings(secret).items()
            if form in output]


@pytest.fixture(scope="module")
def sim():
    with Vcsim(ip="127.0.0.2", user=USER, password=PASSWORD) as simulator:
        service = simulator.connect()
        try:  # vcsim starts its VMs powered on; the VM modules change only powered-off VMs
            vm = find(service, vim.VirtualMachine, VM)
            if vm.runtime.powerState != "poweredOff":
                WaitForTask(vm.PowerOffVM_Task())
        finally:
            Disconnect(service)
        yield simulator


def write_play(tmp_path, plays):
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(plays))  # JSON is YAML
    return str(playbook)


def test_the_encodings_differ():
    forms = encodings(PASSWORD)
    main = [forms[kind] for kind in ("plain", "url", "url_plus", "base64", "xml")]
    assert len(set(main)) == len(main)
    # and each form is found
    for form in main:
        assert leaks("... %s ..." % form, PASSWORD) != []
    assert leaks("password: %s" % MASK, PASSWORD) == []


def test_esxi_modules_print_no_password_with_vvv(sim, tmp_path):
    connection = {"hostname": sim.host, "port": sim.port, "username": USER, "password": "{{ vc_password }}",
                  "validate_certs": False}
    tasks = [
        {"name": "info", "passthrough.gpu.esxi_passthrough_info": {"esxi_hostname": HOST}},
        {"name": "passthrough, check mode", "check_mode": True, "register": "predicted",
         "passthrough.gpu.esxi_passthrough": {"esxi_hostname": HOST, "devices": [A100], "apply_now": True}},
        {"name": "passthrough", "register": "applied",
         "passthrough.gpu.esxi_passthrough": {"esxi_hostname": HOST, "devices": [A100], "apply_now": True}},
        {"name": "mmio", "register": "mmio",
         "passthrough.gpu.vm_mmio": {"vm_name": VM, "rule": "count", "gpu_count": 1}},
        {"name": "device", "register": "device",
         "passthrough.gpu.esxi_vm_passthrough": {"vm_name": VM, "devices": [{"id": A100}]}},
        {"name": "a wrong password", "register": "refused", "ignore_errors": True,
         "passthrough.gpu.esxi_passthrough_info": {"esxi_hostname": HOST, "password": WRONG_PASSWORD}},
        {"name": "what happened", "ansible.builtin.assert": {"that": [
            "predicted is changed and applied is changed", "mmio is changed and device is changed",
            "refused is failed and 'Unable to log on' in refused.msg"]}},
    ]
    play = [{"hosts": "localhost", "gather_facts": False, "vars": {"vc_password": PASSWORD},
             "module_defaults": {"group/passthrough.gpu.vsphere": connection}, "tasks": tasks}]
    start = len(sim.requests())
    proc = run_playbook(write_play(tmp_path, play), extra_args=["-vvv", "--diff"], timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "failed=0" in proc.stdout, output[-8000:]
    # it ran at -vvv (module arguments shown, the password masked) and really logged in with it
    assert MASK in output and "esxi_hostname" in output
    requests = sim.requests()[start:]
    assert {"UpdatePassthruConfig", "ReconfigVM_Task"} <= set(requests) and requests.count("Login") >= 6
    assert leaks(output, PASSWORD, WRONG_PASSWORD) == []


def role_play(check_mode=False):
    return {"hosts": HOST, "connection": "local", "gather_facts": False, "check_mode": check_mode,
            "vars": {"ansible_python_interpreter": sys.executable},
            "roles": [{"role": "passthrough.gpu.esxi_host", "vars": {"esxi_host_gpus": [T4]}}]}


def role_env(sim, **extra):
    """The connection from the controller's environment, as AWX's vCenter credential gives it;
    VMWARE_VALIDATE_CERTS unset, so the role's default decides."""
    env = {"VMWARE_HOST": sim.host, "VMWARE_PORT": str(sim.port), "VMWARE_USER": USER, "VMWARE_PASSWORD": PASSWORD}
    env.update(extra)
    return env


def run_role(sim, tmp_path, plays, **extra):
    # A child of this process would inherit a VMWARE_VALIDATE_CERTS of the caller's shell.
    saved = os.environ.pop("VMWARE_VALIDATE_CERTS", None)
    try:
        proc = run_playbook(write_play(tmp_path, plays), inventory=HOST + ",", env=role_env(sim, **extra),
                            extra_args=["-vvv", "--diff"], timeout=600)
    finally:
        if saved is not None:
            os.environ["VMWARE_VALIDATE_CERTS"] = saved
    return proc, proc.stdout + proc.stderr


def test_esxi_host_role_verifies_certificates_by_default(sim, tmp_path):
    start = len(sim.requests())
    proc, output = run_role(sim, tmp_path, [role_play(check_mode=True)])
    assert proc.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in output, output[-6000:]
    assert sim.requests()[start:] == []  # refused before logging in
    assert leaks(output, PASSWORD) == []


def test_esxi_host_role_prints_no_password_with_vvv(sim, tmp_path):
    start = len(sim.requests())
    # the CA trusted as an admin would, so validate_certs stays at its default (true)
    proc, output = run_role(sim, tmp_path, [role_play(check_mode=True), role_play()], SSL_CERT_FILE=sim.cert_file)
    assert proc.returncode == 0 and "failed=0" in proc.stdout, output[-8000:]
    assert MASK in output
    assert sim.requests()[start:].count("UpdatePassthruConfig") == 1  # the check-mode play changed nothing
    assert leaks(output, PASSWORD) == []


def test_awx_playbook_prints_no_password_with_vvv(awx):  # pylint: disable=redefined-outer-name
    rc, changed, output = awx_tests.run(awx, "-vvv")
    assert rc == 0 and changed and awx.writes(), output[-4000:]
    assert any("/tokens/" in path for _method, path in awx.requests)  # it logged in with the password
    assert leaks(output, awx_tests.PASSWORD) == []


def test_awx_playbook_prints_no_oauth_token_with_vvv(awx):  # pylint: disable=redefined-outer-name
    # The stand-in accepts the token it hands out at login ("t0ken") as a bearer token.
    del awx.env["CONTROLLER_USERNAME"], awx.env["CONTROLLER_PASSWORD"]
    awx.env["CONTROLLER_OAUTH_TOKEN"] = "t0ken"
    rc, changed, output = awx_tests.run(awx, "-vvv")
    assert rc == 0 and changed and awx.writes(), output[-4000:]
    assert not any("/tokens/" in path for _method, path in awx.requests)  # the token was used, no login
    assert leaks(output, "t0ken") == []


KVM_PLAY = """- name: kvm_host with weaker isolation, on a synthetic root
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: passthrough.gpu.kvm_host
      vars:
        kvm_host_root: {root}
        kvm_host_gpus: ['0000:01:00.0']
        kvm_host_install_packages: false
        kvm_host_acs_override: true
        kvm_host_allow_unsafe_interrupts: true
"""


def test_kvm_host_warns_about_acs_override_and_unsafe_interrupts(tmp_path):
    root = tmp_path / "host"
    synthetic_host(str(root))
    playbook = tmp_path / "kvm.yml"
    playbook.write_text(KVM_PLAY.format(root=root))
    proc = run_playbook(str(playbook), inventory="localhost,", timeout=600,
                        extra_args=["--check", "-e", "ansible_python_interpreter=" + sys.executable])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    warnings = " ".join(line for line in output.replace("\n ", " ").splitlines() if "[WARNING]" in line)
    assert "pcie_acs_override makes the kernel split IOMMU groups" in warnings, output[-6000:]
    assert "allow_unsafe_interrupts lets a guest inject interrupts without interrupt remapping" in warnings
