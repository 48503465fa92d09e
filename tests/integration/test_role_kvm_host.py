# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/kvm_host through ansible-playbook on synthetic roots (no VM): check -> apply -> check ->
apply, the no-op converge of a converged host, the refusals and the AMD reset quirk.

The host is the lab VM's PCI layout under a temporary directory, reached with the local connection
and kvm_host_root (so nothing acts on this machine's kernel, packages or boot). The lab VM run is
extensions/molecule/kvm_host.
"""

import json
import os
import re
import shutil
import sys

from helpers import REPO, run_playbook

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

from kvm_host_noop import as_after_reboot, synthetic_host  # noqa: E402  pylint: disable=wrong-import-position

PLAY = [{
    "name": "kvm_host on a synthetic root", "hosts": "localhost", "connection": "local", "gather_facts": False,
    "roles": [{"role": "passthrough.gpu.kvm_host"}],
    "post_tasks": [{
        "name": "Keep what the role set", "check_mode": False,
        "ansible.builtin.copy": {"dest": "{{ result_file }}", "mode": "0600",
                                 "content": "{{ {'reboot_required': kvm_host_reboot_required,"
                                            " 'report': kvm_host_report} | to_json }}"}}],
}]
FILES = ["etc/default/grub", "etc/modprobe.d/passthrough-gpu-vfio.conf", "etc/initramfs-tools/modules",
         "etc/sysctl.d/80-passthrough-gpu-hugepages.conf"]
RULE = "etc/udev/rules.d/61-passthrough-gpu-amd-reset.rules"


def converge(tmp_path, root, check=False, **role_vars):
    """Run the role; returns (rc, changed count, result dict or None, output)."""
    variables = dict({"kvm_host_root": root, "kvm_host_install_packages": False, "kvm_host_gpus": ["0000:01:00.0"],
                      "kvm_host_hugepages_count": 64, "result_file": str(tmp_path / "result.json")}, **role_vars)
    (tmp_path / "play.yml").write_text(json.dumps(PLAY))
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    result_file = tmp_path / "result.json"
    if result_file.exists():
        result_file.unlink()
    args = ["-e", "@" + str(tmp_path / "vars.json"), "--diff"] + (["--check"] if check else [])
    proc = run_playbook(str(tmp_path / "play.yml"), extra_args=args, timeout=600,
                        env={"ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"})
    # YAML results wrap long messages: compare with white space collapsed.
    output = " ".join((proc.stdout + proc.stderr).split()) + "\n" + proc.stdout[-3000:]
    recap = [line for line in proc.stdout.splitlines() if line.startswith("localhost ") and "changed=" in line]
    changed = int(recap[-1].split("changed=")[1].split()[0]) if recap else None
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    if result is not None and changed is not None:
        changed -= 1  # the post task that keeps the result
    return proc.returncode, changed, result, output


def files(tree):
    return {rel: open(tree.path(rel)).read() if os.path.exists(tree.path(rel)) else None for rel in FILES + [RULE]}


def test_check_apply_check_apply_then_noop(tmp_path):
    tree = synthetic_host(str(tmp_path / "host"))
    before = tree.snapshot()
    rc, changed, result, out = converge(tmp_path, tree.root, check=True)
    # One task, host_config, would change all three: kernel args, vfio-pci, huge pages.
    assert rc == 0 and changed == 1, out[-4000:]
    section = out.split("Huge pages, kernel arguments and vfio-pci, now and from every boot]")[1].split("TASK [")[0]
    assert "changed: [localhost]" in section, section
    assert tree.snapshot() == before, "check mode changed the tree"
    assert result["reboot_required"] is True

    rc, changed, result, out = converge(tmp_path, tree.root)
    assert rc == 0 and changed == 1, out[-4000:]
    written = files(tree)
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on iommu=pt"' in written["etc/default/grub"]
    assert "options vfio-pci ids=1b36:0100,8086:293e" in written["etc/modprobe.d/passthrough-gpu-vfio.conf"]
    assert written["etc/sysctl.d/80-passthrough-gpu-hugepages.conf"].endswith("vm.nr_hugepages = 64\n")
    assert result["reboot_required"] is True and result["report"]["devices"] == ["0000:01:00.0", "0000:01:00.1"]
    assert "kvm_host_root is not /" in out  # the reboot that is due is not done, and said why
    assert re.search(r"After the reboot that is due: [^\n]*intel_iommu=on", out)  # verify: what takes effect then

    for check in (True, False):
        rc, changed, result, out = converge(tmp_path, tree.root, check=check)
        assert rc == 0 and changed == 0, out[-4000:]
        assert files(tree) == written

    # After the reboot the first converge asked for: nothing to do, and the verify step passes.
    as_after_reboot(tree, ["intel_iommu=on", "iommu=pt"], 64)
    rc, changed, result, out = converge(tmp_path, tree.root)
    assert rc == 0 and changed == 0, out[-4000:]
    assert result["reboot_required"] is False
    assert result["report"]["drivers"] == {"0000:01:00.0": "vfio-pci", "0000:01:00.1": "vfio-pci"}
    assert re.search(r"The host is what was configured, or becomes it at the reboot that is due\] \**\s*ok: \[localhost\]\n", out)
    assert "After the reboot that is due" not in out


REFUSALS = [
    (None, {"kvm_host_gpus": ["0000:00:01.0"]}, "0000:00:01.0 [1234:1111] is the console GPU (boot_vga)"),
    (None, {"kvm_host_gpus": ["03:01.0"]}, "IOMMU group 9 is not isolated"),
    (None, {"kvm_host_gpus": ["10de:2204"]}, "no PCI device has the id 10de:2204"),
    (None, {"kvm_host_gpus": [60.0]}, "quote addresses in YAML"),
    ("no_uefi", {}, "the host did not boot through UEFI"),
    # A refusal also carries the preflight notes (here: no GPU named, the candidates listed).
    ("no_uefi", {"kvm_host_gpus": []}, "to go on anyway; notes: kvm_host_gpus is empty"),
    ("no_virt", {}, "no virtualization flag (vmx or svm"),
    ("iommu_off_no_table", {}, "the IOMMU is off and the firmware shows none"),
    # Refused by hugepages, the first change, so nothing else is written either.
    (None, {"kvm_host_hugepages_count": 100000}, "asked for 195.3 GiB of huge pages"),
]


def test_refusals_change_nothing(tmp_path):
    """Every refusal in one ansible-playbook run: one inventory host (local connection) per case."""
    hosts, trees = {}, {}
    for index, (change, role_vars, _message) in enumerate(REFUSALS):
        tree = synthetic_host(str(tmp_path / ("host%d" % index)))
        if change == "no_uefi":
            os.unlink(tree.path("sys/firmware/efi/fw_platform_size"))
        elif change == "no_virt":
            tree.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pse\n")
        elif change == "iommu_off_no_table":
            os.unlink(tree.path("sys/firmware/acpi/tables/DMAR"))
            os.unlink(tree.path("sys/class/iommu/dmar0"))
            shutil.rmtree(tree.path("sys/kernel/iommu_groups"))
        trees[index] = (tree, tree.snapshot())
        hosts["case%d" % index] = dict({"ansible_connection": "local", "kvm_host_root": tree.root,
                                        "ansible_python_interpreter": sys.executable}, **role_vars)
    inventory = tmp_path / "inventory.json"
    # Group vars, not extra vars: those would override each case's own.
    inventory.write_text(json.dumps({"all": {"hosts": hosts, "vars": {
        "kvm_host_install_packages": False, "kvm_host_hugepages_count": 64, "kvm_host_gpus": ["0000:01:00.0"]}}}))
    play = [dict(PLAY[0], hosts="all", post_tasks=[])]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    proc = run_playbook(str(tmp_path / "play.yml"), inventory=str(inventory), timeout=600, extra_args=["-f", "8"])
    output = " ".join(proc.stdout.split())
    assert proc.returncode != 0
    failures = {part.split("]", 1)[0]: part for part in output.split("fatal: [")[1:]}
    for index, (_change, _vars, message) in enumerate(REFUSALS):
        assert message in failures.get("case%d" % index, ""), "case %d: %s" % (index, output[-4000:])
        tree, before = trees[index]
        assert tree.snapshot() == before, "case %d changed its tree" % index


def test_uefi_check_can_be_waived(tmp_path):
    tree = synthetic_host(str(tmp_path / "host"))
    os.unlink(tree.path("sys/firmware/efi/fw_platform_size"))
    rc, changed, _result, out = converge(tmp_path, tree.root, check=True, kvm_host_require_uefi=False)
    assert rc == 0 and changed == 1 and "did not boot through UEFI" in out, out[-4000:]


def test_amd_gpu_gets_the_reset_rule_only_with_vendor_reset(tmp_path):
    tree = synthetic_host(str(tmp_path / "host"))
    tree.write("sys/bus/pci/devices/0000:01:00.0/vendor", "0x1002\n")
    tree.write("sys/bus/pci/devices/0000:01:00.0/device", "0x731f\n")
    os.makedirs(tree.path("etc/udev/rules.d"), exist_ok=True)
    rc, _changed, _result, out = converge(tmp_path, tree.root, kvm_host_hugepages_count=None)
    assert rc == 0 and "the vendor-reset module is not installed" in out, out[-4000:]
    assert not os.path.exists(tree.path(RULE))
    rc, _changed, _result, out = converge(tmp_path, tree.root, kvm_host_amd_reset="required",
                                          kvm_host_hugepages_count=None)
    assert rc != 0 and "the vendor-reset module is not installed" in out

    tree.write("lib/modules/6.1.0-50-amd64/updates/dkms/vendor-reset.ko.xz", "")
    rc, changed, _result, out = converge(tmp_path, tree.root, kvm_host_hugepages_count=None)
    assert rc == 0 and changed == 1, out[-4000:]
    rule = open(tree.path(RULE)).read()
    assert ('ATTR{vendor}=="0x1002", ATTR{device}=="0x731f", RUN{builtin}+="kmod load vendor-reset", '
            "RUN+=\"/bin/sh -c 'echo device_specific > /sys%p/reset_method'\"") in rule
    rc, changed, _result, out = converge(tmp_path, tree.root, kvm_host_hugepages_count=None)
    assert rc == 0 and changed == 0, out[-4000:]


def test_no_gpu_chosen_binds_nothing(tmp_path):
    tree = synthetic_host(str(tmp_path / "host"))
    rc, changed, result, out = converge(tmp_path, tree.root, kvm_host_gpus=[], kvm_host_hugepages_count=None)
    assert rc == 0 and changed == 1, out[-4000:]  # the kernel arguments only
    assert not os.path.exists(tree.path("etc/modprobe.d/passthrough-gpu-vfio.conf"))
    assert "kvm_host_gpus is empty" in out and "0000:01:00.0" in out
    assert result["report"]["devices"] == []
