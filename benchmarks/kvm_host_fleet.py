# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A no-op converge of roles/kvm_host over 100 hosts vs a facts-only run over the same hosts.

Goals: the no-op converge takes at most 2x the wall time of the facts-only run, and at most 8 module
runs per host.

The hosts: 100 inventory hosts with the local connection, each with its own synthetic root (the lab
VM's PCI layout, built and converged by kvm_host_noop.py's synthetic_host / converge /
as_after_reboot). One root is converged by the role and made to look rebooted; the 99 others are
copies of it (copying is what saves 99 first converges; the copies hold no absolute link, checked).
Both playbooks run on the same inventory, forks as given (Ansible's default is 5), fact gathering off:

- noop:  roles/kvm_host with kvm_host_root={{ fleet_root }} (what kvm_host_noop.py runs on one host);
- facts: passthrough.gpu.iommu_facts + passthrough.gpu.gpu_facts with root={{ fleet_root }};
- modules (reference, not judged): the role's module runs (iommu_facts, host_config) as bare tasks
  with the role's arguments and no controller-side task: how much of the no-op is the modules' own
  cost.

What is timed: the wall time of each whole ansible-playbook process. The three plays alternate, in
FLEET_ROUNDS rounds (default 3) per forks value with their order turning each round, and the medians
are compared: one run each was too open to the machine's other load. Module runs per host: counted by
callback_plugins/module_count.py (tasks that ran a module on the host; controller-only actions such
as set_fact/assert do not count); every host must report changed=0. The package task cannot run
against a root directory: on a real host it is one more module run, added in the per-host total.

    [FLEET_ROUNDS=3] .venv/bin/python benchmarks/kvm_host_fleet.py [hosts] [forks ...]   # default: 100 hosts, forks 5
"""

import json
import os
import re
import shutil
import statistics
import sys
import tempfile

import benchlib

from kvm_host_noop import PAGES, as_after_reboot, converge, synthetic_host  # noqa: E402  pylint: disable=wrong-import-position

GOAL_RATIO = 2.0
GOAL_CALLS = 8
RECAP = re.compile(r"^host001\s*:\s*ok=(?P<ok>\d+)\s.*\sskipped=(?P<skipped>\d+)", re.M)
PACKAGE_TASK = 1  # the module run the package task adds on a real host
PLAYS = {
    "noop": """- name: kvm_host on every synthetic root
  hosts: fleet
  gather_facts: false
  roles:
    - role: passthrough.gpu.kvm_host
      vars:
        kvm_host_root: "{{{{ fleet_root }}}}"
        kvm_host_gpus: ['0000:01:00.0']
        kvm_host_hugepages_count: {pages}
        kvm_host_install_packages: false
""",
    # Reference, not judged: the role's module runs as bare tasks with the role's arguments
    # (its defaults and the noop play's vars), no controller-side task: the floor of any role that
    # checks huge pages, kernel arguments and vfio-pci with these modules.
    "modules": """- name: The role's module runs alone on every synthetic root
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Read IOMMU groups, PCI devices and the platform
      passthrough.gpu.iommu_facts:
        root: "{{{{ fleet_root }}}}"
    - name: Huge pages, kernel arguments and vfio-pci
      passthrough.gpu.host_config:
        root: "{{{{ fleet_root }}}}"
        bootloader: auto
        hugepages:
          size: 2M
          count: {pages}
        kernel_args:
          iommu: auto
          args: []
        vfio:
          devices: ['0000:01:00.0']
          include_group: true
          allow_shared_group: false
          force: false
          runtime: true
          persistent: true
          blacklist: []
          initramfs: auto
""",
    "facts": """- name: Facts of every synthetic root
  hosts: fleet
  gather_facts: false
  tasks:
    - name: Read IOMMU groups and PCI devices
      passthrough.gpu.iommu_facts:
        root: "{{{{ fleet_root }}}}"
    - name: Read the GPUs
      passthrough.gpu.gpu_facts:
        root: "{{{{ fleet_root }}}}"
""",
}


def absolute_links(root):
    """Links under root that name an absolute path: a copy of the tree would still point into the original."""
    found = []
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            full = os.path.join(directory, name)
            if os.path.islink(full) and os.path.isabs(os.readlink(full)):
                found.append(full)
    return found


def build_fleet(workdir, count):
    """One converged root made to look rebooted, and count-1 copies of it; returns the inventory path."""
    first = os.path.join(workdir, "host001")
    tree = synthetic_host(first)
    proc, counts, _seconds = converge(first, workdir, "first")
    if proc.returncode != 0 or not counts.get("changed"):
        raise SystemExit("first converge failed or changed nothing:\n" + proc.stdout[-6000:] + proc.stderr[-2000:])
    as_after_reboot(tree, ["intel_iommu=on", "iommu=pt"], PAGES)
    links = absolute_links(first)
    if links:
        raise SystemExit("the converged root has absolute links, its copies would share them: %s" % links[:5])
    hosts = {}
    for number in range(1, count + 1):
        name = "host%03d" % number
        root = os.path.join(workdir, name)
        if number > 1:
            shutil.copytree(first, root, symlinks=True)
        hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                       "fleet_root": root}
    inventory = os.path.join(workdir, "fleet.json")
    with open(inventory, "w") as handle:
        json.dump({"fleet": {"hosts": hosts}}, handle, indent=1)  # JSON is YAML
    return inventory


def run(workdir, inventory, play, forks):
    playbook = os.path.join(workdir, play + ".yml")
    with open(playbook, "w") as handle:
        handle.write(PLAYS[play].format(pages=PAGES))
    counts_file = os.path.join(workdir, "%s-%d.counts.json" % (play, forks))
    env = {"ANSIBLE_CALLBACK_PLUGINS": os.path.join(benchlib.HERE, "callback_plugins"),
           "ANSIBLE_CALLBACKS_ENABLED": "module_count", "MODULE_COUNT_FILE": counts_file}
    proc, seconds = benchlib.timed_playbook(playbook, inventory=inventory, extra_args=["--forks", str(forks)], env=env)
    with open(counts_file) as handle:
        hosts = json.load(handle)["hosts"]
    runs = sorted(set(h["module_runs"] for h in hosts.values()))
    if len(runs) != 1:
        raise SystemExit("%s: the hosts ran different numbers of modules: %r" % (play, runs))
    recap = RECAP.search(proc.stdout)
    return {"seconds": round(seconds, 1), "hosts_counted": len(hosts),
            # From the recap of one host: tasks that ran (modules and controller-only actions alike) and skipped.
            "tasks_ok_per_host": int(recap.group("ok")) if recap else None,
            "tasks_skipped_per_host": int(recap.group("skipped")) if recap else None,
            "module_runs_per_host": runs[0],
            "changed_tasks_all_hosts": sum(h["changed"] for h in hosts.values()),
            "actions": [t["action"] for t in next(iter(hosts.values()))["tasks"]]}


def measure(workdir, inventory, count, forks, rounds):
    """Each play ``rounds`` times, their order turning every round; each play's record with the median seconds."""
    samples = dict((name, []) for name in PLAYS)
    for turn in range(rounds):
        order = list(PLAYS)[turn % len(PLAYS):] + list(PLAYS)[:turn % len(PLAYS)]
        for name in order:
            got = run(workdir, inventory, name, forks)
            if got["hosts_counted"] != count or got["changed_tasks_all_hosts"] != 0:
                raise SystemExit("%s run over the fleet: %r" % (name, got))
            samples[name].append(got)
    records = {}
    for name, runs in samples.items():
        records[name] = dict(runs[0], seconds=round(statistics.median(r["seconds"] for r in runs), 1),
                             samples=[r["seconds"] for r in runs])
    return records


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    forks_list = [int(f) for f in sys.argv[2:]] or [5]
    rounds = int(os.environ.get("FLEET_ROUNDS", "3"))
    result = {"machine": benchlib.machine(), "hosts": count, "goal_max_ratio": GOAL_RATIO, "rounds": rounds,
              "goal_max_module_runs_per_host": GOAL_CALLS,
              "what_is_timed": "wall time of one ansible-playbook process over all hosts (local connection, "
                               "gather_facts false); the facts-only, no-op and modules-alone plays alternate, "
                               "%d rounds per forks value with their order turning; medians" % rounds,
              "by_forks": {}}
    with tempfile.TemporaryDirectory() as workdir:
        inventory = build_fleet(workdir, count)
        for forks in forks_list:
            records = measure(workdir, inventory, count, forks, rounds)
            facts, noop, modules = records["facts"], records["noop"], records["modules"]
            real_host_calls = noop["module_runs_per_host"] + PACKAGE_TASK
            ratio = round(noop["seconds"] / facts["seconds"], 2)
            result["by_forks"][str(forks)] = {
                "facts": facts, "noop": noop, "ratio_noop_to_facts": ratio,
                "modules_alone": modules, "ratio_modules_alone_to_facts": round(modules["seconds"] / facts["seconds"], 2),
                "noop_module_runs_per_real_host": real_host_calls,
                "pass_ratio": ratio <= GOAL_RATIO, "pass_calls": real_host_calls <= GOAL_CALLS}
            # Written after each forks value: a long run stopped part-way keeps what it measured.
            result["pass"] = all(r["pass_ratio"] and r["pass_calls"] for r in result["by_forks"].values())
            benchlib.write_result("kvm_host_fleet", result)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
