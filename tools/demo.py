# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""make demo: site.yml on the lab, twice, and the readiness report.

The lab (inventory/lab.yml) is three hosts on this machine:
  lab      a KVM host: the grub lab VM (tests/lab), Debian 12 under QEMU with an Intel IOMMU
  lab-pve  a Proxmox-style host: the systemd-boot lab VM given Proxmox VE's paths and a stand-in
           proxmox-boot-tool (extensions/molecule/proxmox_host/prepare.yml; not Proxmox VE itself)
  DC0_H0   an ESXi host in the GPU vSphere simulator (tests/vcsim), with its two VMs
The first run converges all three (each VM host reboots once, the ESXi host too); the second must
change nothing. Every VM and the simulator are stopped at the end, also on failure.
"""

import os
import re
import socket
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(REPO, ".venv", "bin")
RUN = os.path.join(REPO, ".cache", "demo")
sys.path.insert(0, os.path.join(REPO, "tests", "vcsim"))

from vcsim import Vcsim, find  # noqa: E402  pylint: disable=wrong-import-position

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
# The simulator hot-applies passthrough unless told not to: the T4 waits for a reboot, as some
# devices do on real ESXi, so the ESXi host's reboot policy is part of the demo.
VCSIM_ARGS = ["-no-apply-now", "0000:af:00.0"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabVM:
    """One lab VM with its own run dir and ssh port (tests/lab/start.sh, stop.sh)."""

    def __init__(self, name, flavour):
        self.name = name
        self.env = {"LAB_RUN_DIR": os.path.join(RUN, name), "LAB_SSH_PORT": str(free_port()),
                    "LAB_FLAVOUR": flavour}

    def script(self, name, timeout):
        subprocess.run(["bash", os.path.join(REPO, "tests", "lab", name)], env=dict(os.environ, **self.env),
                       check=True, timeout=timeout)


def playbook(argv, env, title):
    """Run ansible-playbook, showing its output; return the recap {host: (ok, changed, unreachable, failed)}."""
    print("\n=== %s ===" % title, flush=True)
    started = time.monotonic()
    proc = subprocess.Popen([os.path.join(BIN, "ansible-playbook")] + argv, cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    proc.wait()
    print("=== %s: rc %d in %.0f s ===" % (title, proc.returncode, time.monotonic() - started), flush=True)
    if proc.returncode != 0:
        raise SystemExit("demo: %s failed (rc %d)" % (title, proc.returncode))
    return {m.group(1): tuple(int(g) for g in m.groups()[1:]) for m in RECAP.finditer("".join(lines))}


def power_off(sim, names):
    """The simulator starts its VMs powered on; devices change only on powered-off VMs."""
    from pyVim.task import WaitForTask  # pylint: disable=import-outside-toplevel
    from pyVmomi import vim  # pylint: disable=import-outside-toplevel

    service = sim.connect()
    for name in names:
        vm = find(service, vim.VirtualMachine, name)
        if vm.runtime.powerState != "poweredOff":
            WaitForTask(vm.PowerOffVM_Task())


def main():
    kvm, pve = LabVM("lab", "grub"), LabVM("lab-pve", "systemd-boot")
    started = time.monotonic()
    with Vcsim(args=VCSIM_ARGS) as sim:
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
                   LAB_SSH_PORT=kvm.env["LAB_SSH_PORT"], LAB_PVE_SSH_PORT=pve.env["LAB_SSH_PORT"],
                   # The simulator's own certificate, trusted: validate_certs stays true.
                   SSL_CERT_FILE=sim.cert_file, REQUESTS_CA_BUNDLE=sim.cert_file, **sim.env(validate_certs=True))
        try:
            for vm in (kvm, pve):
                vm.script("start.sh", timeout=900)
            power_off(sim, ["DC0_H0_VM0", "DC0_H0_VM1"])
            playbook(["-i", "inventory/lab.yml", "-l", "lab-pve", "extensions/molecule/proxmox_host/prepare.yml"],
                     env, "Proxmox VE paths on lab-pve (a lab stand-in)")
            playbook(["-i", "inventory/lab.yml", "site.yml", "--diff"], env, "site.yml, first run")
            second = playbook(["-i", "inventory/lab.yml", "site.yml"], env, "site.yml, second run")
        finally:
            for vm in (pve, kvm):
                vm.script("stop.sh", timeout=300)
    changed = {host: counts[1] for host, counts in second.items() if counts[1]}
    print("\ndemo: %d hosts, %.0f s in all" % (len(second), time.monotonic() - started))
    if changed:
        raise SystemExit("demo: the second run changed something: %s" % changed)
    print("demo: the second run changed nothing (changed=0 on %s)" % ", ".join(sorted(second)))
    report = os.path.join(REPO, "report")
    html, markdown = os.path.join(report, "readiness.html"), os.path.join(report, "readiness.md")
    print("demo: readiness report: %s and %s" % (html, markdown))


if __name__ == "__main__":
    main()
