# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the vfio_bind lab tests share: one playbook phase at a time, and the drivers as lspci sees them."""

import os
import subprocess
import time

from helpers import BIN, REPO, ansible_env

TARGET = os.path.join(REPO, "tests", "integration", "targets", "vfio_bind")
GPU, AUDIO, GROUP = "0000:01:00.0", "0000:01:00.1", 8
CONF = "/etc/modprobe.d/passthrough-gpu-vfio.conf"


def playbook(lab, phase, timeout=1800, **extra_vars):
    """Run one phase of targets/vfio_bind (its tasks assert the module results); return stdout."""
    argv = [os.path.join(BIN, "ansible-playbook"), "-i", lab.inventory, os.path.join(TARGET, "playbook.yml"),
            "-e", "vfio_phase=%s" % phase, "--diff"]
    for name, value in extra_vars.items():
        argv += ["-e", "%s=%s" % (name, value)]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(**lab.env), capture_output=True, text=True,
                          timeout=timeout, check=False)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, "phase %s failed (rc %d) after %.0f s:\n%s\n%s\nserial console:\n%s" % (
        phase, proc.returncode, elapsed, proc.stdout[-12000:], proc.stderr[-4000:], lab.serial_tail())
    print("vfio_bind phase %s: %.1f s" % (phase, elapsed))
    return proc.stdout


def drivers(lab, *addresses):
    return [lab.ssh("basename \"$(readlink /sys/bus/pci/devices/%s/driver || echo none)\"" % a).strip()
            for a in addresses]


def lspci_driver(lab, address):
    out = lab.ssh("lspci -k -s %s" % address)
    lines = [line.split(":", 1)[1].strip() for line in out.splitlines() if "Kernel driver in use" in line]
    return lines[0] if lines else None
