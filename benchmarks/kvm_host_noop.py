# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Module runs of a no-op converge of roles/kvm_host on a converged host (target: 8 or fewer).

The host is a synthetic root (the lab VM's PCI layout, tests/unit/sysfs_tree.py) reached with the
local connection and kvm_host_root pointing at it: converge once, make the tree look like the host
after its reboot (kernel arguments on /proc/cmdline, the group on vfio-pci, the pages given), then
converge again and count, with benchmarks/callback_plugins/module_count.py, the tasks that ran a
module on the host. Packages cannot be installed into a root directory, so the package task does not
run here; on a real host it is one more module run (counted as such in the result's total).
Results: benchmarks/results/kvm_host_noop.json.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))

from sysfs_tree import SysfsTree  # noqa: E402  pylint: disable=wrong-import-position

BIN = os.path.dirname(sys.executable)
BUDGET = 8
GPU = "0000:01:00.0"
PAGES = 64

PLAY = """- name: kvm_host on a synthetic root
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: passthrough.gpu.kvm_host
      vars:
        kvm_host_root: {root}
        kvm_host_gpus: ['{gpu}']
        kvm_host_hugepages_count: {pages}
        kvm_host_install_packages: false
"""


def synthetic_host(root, amd=False):
    """The lab VM's devices and the files the role's modules read, before any configuration."""
    tree = SysfsTree(root).lab()
    tree.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu pse vmx pdpe1gb\n")
    tree.write("proc/meminfo", "MemTotal:        4005196 kB\nHugepagesize:       2048 kB\n")
    tree.write("sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:       4005196 kB\n")
    tree.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n")
    tree.write("sys/firmware/efi/fw_platform_size", "64\n")
    tree.write("sys/firmware/acpi/tables/DMAR", "DMAR")
    tree.write("etc/debian_version", "12.8\n")
    tree.write("etc/default/grub", 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"\n'
                                   'GRUB_CMDLINE_LINUX="console=ttyS0,115200"\n')
    tree.write("usr/sbin/update-grub", "#!/bin/sh\n")
    tree.write("usr/sbin/update-initramfs", "#!/bin/sh\n")
    tree.write("etc/initramfs-tools/modules", "# List of modules\n")
    os.makedirs(tree.path("lib/modules/6.1.0-50-amd64"), exist_ok=True)
    os.makedirs(tree.path("etc/udev/rules.d"), exist_ok=True)
    if amd:
        # The GPU becomes an AMD Navi 10 (1002:731f) with vendor-reset loaded.
        tree.write("sys/bus/pci/devices/%s/vendor" % GPU, "0x1002\n")
        tree.write("sys/bus/pci/devices/%s/device" % GPU, "0x731f\n")
        os.makedirs(tree.path("sys/module/vendor_reset"), exist_ok=True)
        tree.write("sys/module/vendor_reset/initstate", "live\n")
    return tree


def as_after_reboot(tree, args, pages):
    """What the host looks like after the reboot the first converge asked for."""
    with open(tree.path("proc/cmdline")) as handle:
        cmdline = handle.read().split()
    tree.cmdline(" ".join(cmdline + [a for a in args if a not in cmdline]))
    for address in ("0000:01:00.0", "0000:01:00.1"):
        link = tree.path("sys/bus/pci/devices", address, "driver")
        target = os.readlink(link)
        os.unlink(link)
        os.symlink(os.path.join(os.path.dirname(target), "vfio-pci"), link)
    tree.write("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "%d\n" % pages)


def converge(root, workdir, name, extra_args=(), pages=PAGES):
    """ansible-playbook of PLAY with the counting callback; returns (proc, counts, seconds)."""
    playbook = os.path.join(workdir, "play.yml")
    with open(playbook, "w") as handle:
        handle.write(PLAY.format(root=root, gpu=GPU, pages=pages))
    counts_file = os.path.join(workdir, name + ".json")
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "callback_plugins"),
               ANSIBLE_CALLBACKS_ENABLED="module_count", MODULE_COUNT_FILE=counts_file,
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    started = time.monotonic()
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), playbook] + list(extra_args), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    seconds = time.monotonic() - started
    counts = {}
    if os.path.exists(counts_file):
        with open(counts_file) as handle:
            counts = json.load(handle)["hosts"].get("localhost", {})
    return proc, counts, seconds


def measure(amd=False):
    with tempfile.TemporaryDirectory() as workdir:
        root = os.path.join(workdir, "host")
        tree = synthetic_host(root, amd=amd)
        first, counts1, _seconds = converge(root, workdir, "first")
        if first.returncode != 0:
            raise SystemExit("first converge failed:\n" + first.stdout[-6000:] + first.stderr[-2000:])
        as_after_reboot(tree, ["intel_iommu=on", "iommu=pt"], PAGES)
        second, counts2, seconds = converge(root, workdir, "noop")
        if second.returncode != 0:
            raise SystemExit("no-op converge failed:\n" + second.stdout[-6000:] + second.stderr[-2000:])
        return {
            "first_converge": {"module_runs": counts1.get("module_runs"), "changed": counts1.get("changed")},
            "noop_converge": counts2,
            "noop_seconds": round(seconds, 1),
        }


def main():
    results = {"budget": BUDGET,
               "how_counted": "tasks that ran a module on the managed host (ok/changed/failed), from the "
                              "module_count callback; set_fact/assert/debug/include_* run on the controller and "
                              "are not counted; the package task cannot run against a root directory, so 1 is "
                              "added for it in total_on_a_real_host"}
    for name, amd in (("lab_gpu", False), ("amd_gpu_with_vendor_reset", True)):
        run = measure(amd=amd)
        noop = run["noop_converge"]
        run["total_on_a_real_host"] = noop["module_runs"] + 1
        run["within_budget"] = run["total_on_a_real_host"] <= BUDGET and noop["changed"] == 0
        results[name] = run
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "kvm_host_noop.json"), "w") as handle:
        json.dump(results, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0 if all(results[n]["within_budget"] for n in ("lab_gpu", "amd_gpu_with_vendor_reset")) else 1


if __name__ == "__main__":
    sys.exit(main())
