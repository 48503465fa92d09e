# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu_facts + gpu_facts on a synthetic 1,024-function host vs ansible.builtin.ping (goal: 1.25x or less).

The host is a tree under a temporary directory laid out by tests/unit/sysfs_tree.py: 64 IOMMU groups
of 16 functions each (a PCIe root port and 15 functions on two slots behind it), every function with
its resource file; 8 of the groups hold a GPU (VGA + HDMI audio + USB-C functions, 16 GiB BAR1) and
the others 15 two-BAR NIC functions. Both playbooks run on localhost with the local connection, the
same Python, the same ansible.cfg, fact gathering off:

- ping:  one task, ansible.builtin.ping;
- facts: two tasks, passthrough.gpu.iommu_facts then passthrough.gpu.gpu_facts, root=<tree>
         (each reads the whole tree: gpu_facts needs the groups to judge each GPU).

The goal is judged on facts vs ping. For the record, plays of one module each (iommu_facts alone,
gpu_facts alone) and of two pings are timed in the same rounds.

What is timed: the wall time of the whole ansible-playbook process, start to exit, as a user sees it.
The runs alternate (ping, facts, ping, facts, ...) after one untimed warm-up of each, so a change of
machine load hits both alike; the medians are compared. For the record, the same two reads done in
one Python process with no Ansible (plugins/module_utils/_pci.py + _gpu.py) are timed too, and each
module's AnsiballZ payload (kept from the warm-up) run by itself shows the module side of a task
(the rest of a task's time is the controller's).

    .venv/bin/python benchmarks/facts_vs_ping.py [repetitions]    # after `make link`; default 9
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

from sysfs_tree import IO, MEM32, MEM64, MEM64_PREF, SysfsTree, bar_line  # noqa: E402  pylint: disable=wrong-import-position

GOAL = 1.25
GROUPS = 64
PER_GROUP = 16
GPU_EVERY = 8  # every 8th group holds a GPU: 8 GPUs
PLAY = """- name: {name}
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
{tasks}"""
TASKS = {
    "ping": """    - name: Ping
      ansible.builtin.ping:
""",
    "ping_twice": """    - name: Ping
      ansible.builtin.ping:
    - name: Ping again
      ansible.builtin.ping:
""",
    "facts": """    - name: Read IOMMU groups and PCI devices
      passthrough.gpu.iommu_facts:
        root: {root}
    - name: Read the GPUs
      passthrough.gpu.gpu_facts:
        root: {root}
""",
    "iommu_facts": """    - name: Read IOMMU groups and PCI devices
      passthrough.gpu.iommu_facts:
        root: {root}
""",
    "gpu_facts": """    - name: Read the GPUs
      passthrough.gpu.gpu_facts:
        root: {root}
""",
}


def synthetic_1024(root):
    """64 groups x 16 functions; returns the number of functions written."""
    tree = SysfsTree(root)
    tree.iommu_unit("dmar0")
    tree.cmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-50-amd64 root=UUID=1 ro quiet intel_iommu=on iommu=pt")
    count = 0
    for group in range(GROUPS):
        # Root ports 00:01.0-00:10.3, four functions a slot, as on a server's root complex.
        port = "0000:00:%02x.%d" % (group // 4 + 1, group % 4)
        tree.device(port, vendor="8086", device="347a", klass="060400", driver="pcieport", group=group)
        count += 1
        bus = group + 1
        for index in range(PER_GROUP - 1):
            address = "0000:%02x:%02x.%d" % (bus, index // 8, index % 8)
            mem32 = 0x80000000 + count * 0x100000
            wide = 0x10000000000 + count * (32 << 30)
            kind = dict(vendor="8086", device="1521", klass="020000", driver="igb",
                        resources={0: bar_line(mem32, 512 << 10, MEM32), 3: bar_line(wide, 16 << 10, MEM64)})
            if group % GPU_EVERY == 0 and index < 3:
                kind = [dict(vendor="10de", device="2204", klass="030000", driver="nvidia", reset="bus",
                             boot_vga=(group == 0),
                             resources={0: bar_line(mem32, 16 << 20, MEM32), 1: bar_line(wide, 16 << 30, MEM64_PREF),
                                        3: bar_line(wide + (16 << 30), 32 << 20, MEM64_PREF),
                                        5: bar_line(0x1000 + group * 0x80, 128, IO)}),
                        dict(vendor="10de", device="1aef", klass="040300", driver="snd_hda_intel",
                             resources={0: bar_line(mem32, 16 << 10, MEM32)}),
                        dict(vendor="10de", device="1ada", klass="0c0330", driver="xhci_hcd",
                             resources={0: bar_line(mem32, 256 << 10, MEM64)})][index]
            tree.device(address, group=group, parents=[port], numa=group * 2 // GROUPS, **kind)
            count += 1
    return count


def in_process(root, repetitions):
    """The two modules' reads in one Python process with no Ansible: what the reading itself costs."""
    sys.path.insert(0, os.path.join(benchlib.REPO, ".build", "collections"))
    from ansible_collections.passthrough.gpu.plugins.module_utils import _gpu, _pci  # pylint: disable=import-outside-toplevel
    samples = []
    for _round in range(repetitions):
        started = time.monotonic()
        iommu = _pci.read_iommu(root)  # what iommu_facts does
        _again, gpus = _gpu.read_gpus(root)  # what gpu_facts does: it reads the groups again
        samples.append(time.monotonic() - started)
    return iommu, gpus, samples


def payload_times(kept, repetitions):
    """Each module's AnsiballZ payload run by itself, as the connection runs it: the module side of a task."""
    found = {}
    for directory, _dirs, files in os.walk(kept):
        for name in files:
            if name.startswith("AnsiballZ_") and name.endswith(".py"):
                found[name[len("AnsiballZ_"):-3]] = os.path.join(directory, name)
    samples = dict((name, []) for name in sorted(found))
    for _round in range(repetitions):
        for name, path in sorted(found.items()):
            started = time.monotonic()
            subprocess.run([sys.executable, path], stdout=subprocess.DEVNULL, check=True, timeout=300)
            samples[name].append(time.monotonic() - started)
    return dict((name, benchlib.summary(s)) for name, s in samples.items())


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    result = {"machine": benchlib.machine(), "repetitions": repetitions, "goal_max_ratio": GOAL}
    with tempfile.TemporaryDirectory() as workdir:
        root = os.path.join(workdir, "host")
        functions = synthetic_1024(root)
        iommu, gpus, reads = in_process(root, repetitions)
        assert len(iommu["devices"]) == functions == GROUPS * PER_GROUP, len(iommu["devices"])
        assert len(iommu["groups"]) == GROUPS and len(gpus) == GROUPS // GPU_EVERY, (len(iommu["groups"]), len(gpus))
        playbooks = {}
        for name, tasks in TASKS.items():
            playbooks[name] = os.path.join(workdir, name + ".yml")
            with open(playbooks[name], "w") as handle:
                handle.write(PLAY.format(name=name, tasks=tasks.format(root=root)))
        args = ["-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable]
        samples = {name: [] for name in TASKS}
        kept = os.path.join(workdir, "remote-tmp")
        for name in TASKS:  # warm-up (byte-compiled caches, page cache), keeping the module payloads
            benchlib.timed_playbook(playbooks[name], extra_args=args,
                                    env={"ANSIBLE_KEEP_REMOTE_FILES": "1", "ANSIBLE_REMOTE_TMP": kept})
        payloads = payload_times(kept, repetitions)
        for _round in range(repetitions):
            for name in TASKS:
                _proc, seconds = benchlib.timed_playbook(playbooks[name], extra_args=args)
                samples[name].append(seconds)
    ping = statistics.median(samples["ping"])
    facts = statistics.median(samples["facts"])
    result.update({
        "tree": {"functions": functions, "iommu_groups": GROUPS, "gpus": GROUPS // GPU_EVERY,
                 "layout": "64 groups: a root port + 15 functions on 2 slots; 8 GPU groups (VGA, audio, USB + 12 NICs)"},
        "what_is_timed": "wall time of one ansible-playbook process (local connection, gather_facts false); "
                         "runs alternate, one untimed warm-up each; median of the repetitions",
        "ping": benchlib.summary(samples["ping"]),
        "facts": benchlib.summary(samples["facts"]),
        "ping_twice": benchlib.summary(samples["ping_twice"]),
        "iommu_facts_alone": benchlib.summary(samples["iommu_facts"]),
        "gpu_facts_alone": benchlib.summary(samples["gpu_facts"]),
        "ratio_iommu_facts_alone_to_ping": round(statistics.median(samples["iommu_facts"]) / ping, 3),
        "ratio_gpu_facts_alone_to_ping": round(statistics.median(samples["gpu_facts"]) / ping, 3),
        "in_process_reads": benchlib.summary(reads),
        "module_payloads_alone": payloads,
        "ratio_facts_to_ping": round(facts / ping, 3),
        "ratio_facts_to_ping_twice": round(facts / statistics.median(samples["ping_twice"]), 3),
    })
    result["pass"] = result["ratio_facts_to_ping"] <= GOAL
    benchlib.write_result("facts_vs_ping", result)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
