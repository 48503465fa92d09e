# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import sys

import pytest

from ansible_collections.passthrough.gpu.plugins.modules import libvirt_passthrough

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "module_utils"))

from test_libvirt import DOMAIN, fake_virsh_host  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def virsh(monkeypatch, tree):
    fake = fake_virsh_host(tree, monkeypatch)
    fake.root = tree.root
    return fake


ARGS = {"name": "guest", "hostdevs": ["0000:01:00.0"], "all_functions": True, "hugepages": True,
        "vcpu_pins": {"0": "2", "1": "3"}, "emulator_cpuset": "0-1", "cpu_mode": "host-passthrough",
        "kvm_hidden": True, "hyperv_vendor_id": "lab", "firmware": "efi", "mmio64_mb": 65536}


def test_check_apply_check_apply(virsh, run_module):
    args = dict(ARGS, root=virsh.root, _ansible_diff=True)
    code, result = run_module(libvirt_passthrough, dict(args, _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True and virsh.xml == DOMAIN
    assert "hostdev 0000:01:00.1 added" in result["changes"] and result["restart_required"] is False
    assert "<hostdev mode=\"subsystem\" type=\"pci\" managed=\"yes\">" in result["diff"]["after"]
    assert result["diff"]["before_header"] == "guest (persistent definition)"
    code, applied = run_module(libvirt_passthrough, args)
    assert code == 0 and applied["changed"] is True and applied["changes"] == result["changes"]
    assert "opt/ovmf/X-PciMmio64Mb" in virsh.xml and applied["state"] == "shut off"
    for mode in (True, False):
        code, again = run_module(libvirt_passthrough, dict(args, _ansible_check_mode=mode))
        assert code == 0 and again["changed"] is False and again["diff"] == {} and again["commands"] == []


@pytest.mark.parametrize("args, message", [
    ({"name": "nope", "hugepages": True}, "no domain 'nope' on qemu:///system"),
    ({"hostdevs": ["0000:07:00.0"]}, "0000:07:00.0 is not a PCI device on this host"),
    ({"hostdevs": ["1:0.0"]}, "'1:0.0' is not a PCI address like 0000:01:00.0"),
    ({"vcpu_pins": {"0": "4"}}, "host CPU.s. 4, not online"),
    ({"hugepage_size": "2M"}, "hugepage_size needs hugepages=true"),
    ({"mmio64_mb": 1024}, "mmio64_mb is read by OVMF only"),
])
def test_refusals_change_nothing(virsh, run_module, args, message):
    code, result = run_module(libvirt_passthrough, dict({"name": "guest", "root": virsh.root}, **args))
    assert code == 1 and result["failed"] is True
    assert __import__("re").search(message, result["msg"]), result["msg"]
    assert virsh.xml == DOMAIN and not any(call[3] == "define" for call in virsh.calls)
