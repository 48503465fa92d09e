# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""iommu_facts vs the guides' bash loop over /sys/kernel/iommu_groups, in the lab VM with >= 64 PCI functions.

Goal: the module at least 5x faster. The loop is the one the passthrough guides print:

    for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; n=${n%%/*};
      printf 'IOMMU Group %s ' "$n"; lspci -nns "${d##*/}"; done

The VM is the grub lab (tests/lab/start.sh, QEMU/TCG, emulated Intel IOMMU) with EXTRA_DEVICES
appended through LAB_EXTRA_DEVICES: 16 more PCIe root ports (two multifunction slots), 8 of them
each with an 8-function device (QEMU's `edu`, no driver), 4 with a virtio-rng, one with a PCIe switch
(upstream + 2 downstream ports, an `edu` behind each) and one with a PCIe-to-PCI bridge holding 16
8-function `edu` devices (one IOMMU group for all 128, as behind any conventional PCI bridge). The script refuses to
measure when the VM shows fewer than 64 functions. One VM boot; the VM is always stopped after.

Three measurements, each the median of alternating repetitions after one untimed warm-up of each side:

1. in_vm: both sides as one process inside the VM, started one after the other from a single ssh
   session, wall time taken in the VM (date +%s%N), output to /dev/null. The module side is
   `python3 AnsiballZ_iommu_facts.py`, the very file Ansible sends and runs (kept with
   ANSIBLE_KEEP_REMOTE_FILES), so it includes Python's start, the module's imports, the scan of every
   device (ids, class, driver, group, BARs, bridges, isolation verdicts) and its JSON. The loop side
   is `bash -c LOOP` (one lspci process per device, each reading pci.ids for the names).
   No ssh and no Ansible on either side: the work itself. This is the measurement the goal is
   judged on.
2. ansible: one ansible-playbook task each, against the lab over ssh from this machine: the module
   vs ansible.builtin.shell running the loop. Wall time of the whole ansible-playbook process, so
   both pay the same controller start and ssh cost.
3. guide_by_hand: the loop through plain ssh (tests/lab/ssh.sh), as a guide's reader runs it, vs
   measurement 2's module playbook. Informational.

    LAB_BOOT_TIMEOUT=900 .venv/bin/python benchmarks/lab_sysfs_scan.py [repetitions]   # default 7

Environment: LAB_BOOT_TIMEOUT (900), LAB_CACHE; BENCH_LAB_DIR: the directory of the lab scripts
(default tests/lab) -- start.sh there must understand LAB_EXTRA_DEVICES.
"""

import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import benchlib

GOAL = 5.0
MIN_FUNCTIONS = 64
LOOP = ("for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; n=${n%%/*}; "
        "printf 'IOMMU Group %s ' \"$n\"; lspci -nns \"${d##*/}\"; done")
REMOTE_TMP = "/root/.bench-ansible-tmp"


def extra_devices():
    """QEMU arguments for the extra PCI functions; addresses 08.x-09.x are free in start.sh's layout."""
    args = []
    ports = []
    for number in range(16):
        port = "brp%d" % number
        ports.append(port)
        slot, function = 8 + number // 8, number % 8
        # io-reserve=0: the devices below have no I/O BARs, and 16 more 4 KiB I/O windows would not fit.
        args += ["-device", "pcie-root-port,id=%s,bus=pcie.0,addr=%02x.%d,chassis=%d,slot=%d,io-reserve=0%s" % (
            port, slot, function, 10 + number, 10 + number, ",multifunction=on" if function == 0 else "")]
    for port in ports[:8]:
        args += ["-device", "edu,bus=%s,addr=00.0,multifunction=on" % port]
        for function in range(1, 8):
            args += ["-device", "edu,bus=%s,addr=00.%d" % (port, function)]
    for port in ports[8:12]:
        args += ["-device", "virtio-rng-pci,bus=%s,addr=00.0,disable-legacy=on" % port]
    args += ["-device", "x3130-upstream,id=bup,bus=%s" % ports[12]]
    for index in range(2):
        args += ["-device", "xio3130-downstream,id=bdown%d,bus=bup,chassis=%d,slot=0" % (index, 40 + index),
                 "-device", "edu,bus=bdown%d,addr=00.0" % index]
    args += ["-device", "pcie-pci-bridge,id=bpb,bus=%s,addr=00.0" % ports[13]]
    for slot in range(1, 17):
        args += ["-device", "edu,bus=bpb,addr=%02x.0,multifunction=on" % slot]
        for function in range(1, 8):
            args += ["-device", "edu,bus=bpb,addr=%02x.%d" % (slot, function)]
    return args


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabVM:
    def __init__(self, workdir):
        self.dir = os.environ.get("BENCH_LAB_DIR", os.path.join(benchlib.REPO, "tests", "lab"))
        self.env = dict(os.environ, LAB_SSH_PORT=str(free_port()), LAB_RUN_DIR=os.path.join(workdir, "lab-run"),
                        LAB_FLAVOUR="grub", LAB_BOOT_TIMEOUT=os.environ.get("LAB_BOOT_TIMEOUT", "900"),
                        LAB_CACHE=os.environ.get("LAB_CACHE", os.path.join(benchlib.REPO, ".cache", "lab")),
                        LAB_EXTRA_DEVICES=" ".join(extra_devices()))
        with open(os.path.join(self.dir, "start.sh")) as handle:
            if "LAB_EXTRA_DEVICES" not in handle.read():
                raise SystemExit("%s/start.sh does not take LAB_EXTRA_DEVICES (see benchmarks/README.md)" % self.dir)

    def script(self, name, timeout):
        subprocess.run(["bash", os.path.join(self.dir, name)], env=self.env, check=True, timeout=timeout)

    def ssh(self, command, timeout=1800):
        proc = subprocess.run(["bash", os.path.join(self.dir, "ssh.sh"), command], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise SystemExit("in the lab VM, %r failed (rc %d): %s" % (command[:200], proc.returncode, proc.stderr))
        return proc.stdout

    def playbook_env(self):
        return {"LAB_SSH_PORT": self.env["LAB_SSH_PORT"], "LAB_CACHE": self.env["LAB_CACHE"]}


PLAYS = {
    "module": """- name: iommu_facts
  hosts: lab
  gather_facts: false
  tasks:
    - name: Read IOMMU groups and PCI devices
      passthrough.gpu.iommu_facts:
""",
    "loop": """- name: The guides' loop
  hosts: lab
  gather_facts: false
  tasks:
    - name: List IOMMU groups with lspci
      ansible.builtin.shell:
        cmd: {loop}
        executable: /bin/bash
      changed_when: false
""",
}


def in_vm(vm, payload, repetitions):
    """Alternating runs inside the VM, one ssh session; returns {"module": [s...], "loop": [s...]}."""
    script = """set -e
t() {{ local a b; a=$(date +%s%N); "$@" >/dev/null 2>&1; b=$(date +%s%N); echo "$1 $(( (b - a) / 1000 ))"; }}
python3 {payload} >/dev/null; bash -c {loop} >/dev/null
for i in $(seq {n}); do t python3 {payload}; t bash -c {loop}; done
""".format(payload=shlex.quote(payload), loop=shlex.quote(LOOP), n=repetitions)
    samples = {"module": [], "loop": []}
    for line in vm.ssh("bash -c %s" % shlex.quote(script)).splitlines():
        what, micros = line.split()
        samples["module" if what == "python3" else "loop"].append(int(micros) / 1e6)
    return samples


def main():
    repetitions = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    result = {"machine": benchlib.machine(), "repetitions": repetitions, "goal_min_speedup": GOAL}
    with tempfile.TemporaryDirectory() as workdir:
        vm = LabVM(workdir)
        started = time.monotonic()
        try:
            vm.script("start.sh", timeout=int(vm.env["LAB_BOOT_TIMEOUT"]) + 120)
            result["vm_boot_s"] = round(time.monotonic() - started, 1)
            functions = int(vm.ssh("ls /sys/bus/pci/devices | wc -l").strip())
            groups = int(vm.ssh("ls /sys/kernel/iommu_groups | wc -l").strip())
            lines = len(vm.ssh(LOOP).splitlines())
            if min(functions, lines) < MIN_FUNCTIONS:
                raise SystemExit("the lab VM shows %d PCI functions (%d loop lines); %d needed"
                                 % (functions, lines, MIN_FUNCTIONS))
            result["vm"] = {"pci_functions": functions, "iommu_groups": groups, "loop_lines": lines,
                            "kernel": vm.ssh("uname -r").strip(), "python3": vm.ssh("python3 -V").strip(),
                            "qemu": "TCG, q35, intel-iommu; extra devices: " + vm.env["LAB_EXTRA_DEVICES"]}
            playbooks = {}
            for name, text in PLAYS.items():
                playbooks[name] = os.path.join(workdir, name + ".yml")
                with open(playbooks[name], "w") as handle:
                    handle.write(text.format(loop=json.dumps(LOOP)))  # a JSON string is a YAML scalar
            env = dict(vm.playbook_env(), ANSIBLE_KEEP_REMOTE_FILES="1", ANSIBLE_REMOTE_TMP=REMOTE_TMP)
            benchlib.timed_playbook(playbooks["module"], env=env)  # keeps the payload; warms the ssh master
            payload = vm.ssh("ls %s/*/AnsiballZ_iommu_facts.py | head -n 1" % REMOTE_TMP).strip()
            inside = in_vm(vm, payload, repetitions)
            through = {"module": [], "loop": []}
            by_hand = []
            benchlib.timed_playbook(playbooks["loop"], env=vm.playbook_env())  # warm-up
            for _round in range(repetitions):
                for name in ("module", "loop"):
                    through[name].append(benchlib.timed_playbook(playbooks[name], env=vm.playbook_env())[1])
                begun = time.monotonic()
                vm.ssh(LOOP)
                by_hand.append(time.monotonic() - begun)
        finally:
            vm.script("stop.sh", timeout=300)

    def ratio(slow, fast):
        return round(statistics.median(slow) / statistics.median(fast), 2)

    result.update({
        "in_vm": {"module": benchlib.summary(inside["module"]), "loop": benchlib.summary(inside["loop"]),
                  "speedup": ratio(inside["loop"], inside["module"]),
                  "what_is_timed": "inside the VM, one process each, wall time by date +%s%N, output to /dev/null: "
                                   "python3 AnsiballZ_iommu_facts.py (the payload Ansible runs) vs bash -c LOOP"},
        "ansible": {"module": benchlib.summary(through["module"]), "loop": benchlib.summary(through["loop"]),
                    "speedup": ratio(through["loop"], through["module"]),
                    "what_is_timed": "wall time of one ansible-playbook process over ssh: the iommu_facts task "
                                     "vs an ansible.builtin.shell task running LOOP"},
        "guide_by_hand": {"loop_over_ssh": benchlib.summary(by_hand),
                          "speedup_vs_module_playbook": ratio(by_hand, through["module"]),
                          "what_is_timed": "LOOP through plain ssh (tests/lab/ssh.sh) vs the module playbook above"},
        "loop": LOOP,
    })
    result["pass"] = result["in_vm"]["speedup"] >= GOAL
    benchlib.write_result("lab_sysfs_scan", result)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
