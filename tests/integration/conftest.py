# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import socket
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from helpers import REPO  # noqa: E402  pylint: disable=wrong-import-position

sys.path.insert(0, os.path.join(REPO, "tests", "vcsim"))

from vcsim import Vcsim  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.join(REPO, "tests", "lab")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Lab:
    """The running lab VM: ssh into it, and the inventory/env that reach it."""

    def __init__(self, port, run_dir, flavour="grub", memory=None):
        self.env = {"LAB_SSH_PORT": str(port), "LAB_RUN_DIR": str(run_dir), "LAB_FLAVOUR": flavour}
        if memory:
            self.env["LAB_MEMORY"] = str(memory)
        self.inventory = os.path.join(REPO, "inventory", "lab.yml")
        self.run_dir = str(run_dir)

    def serial_tail(self, lines=40):
        """The last lines the VM printed on its serial console: what a failure message needs when ssh is gone."""
        try:
            with open(os.path.join(self.run_dir, "serial.log"), errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError as err:
            return "(no serial log: %s)" % err

    def run(self, script, timeout):
        env = dict(os.environ, **self.env)
        subprocess.run(["bash", os.path.join(LAB, script)], env=env, check=True, timeout=timeout)

    def ssh(self, command, stdin=None, binary=False, timeout=300):
        proc = subprocess.run(["bash", os.path.join(LAB, "ssh.sh"), command], env=dict(os.environ, **self.env),
                              stdin=stdin, capture_output=True, timeout=timeout, check=False)
        assert proc.returncode == 0, "in the lab VM, %r failed: %s" % (command, proc.stderr.decode(errors="replace"))
        return proc.stdout if binary else proc.stdout.decode()


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    """A fresh lab VM for each test file (a throw-away copy of the image); always stopped after.

    A test file may set LAB_FLAVOUR ("grub", "systemd-boot") and LAB_MEMORY (MiB) for its VM.
    """
    vm = Lab(free_port(), tmp_path_factory.mktemp("lab-run"),
             flavour=getattr(request.module, "LAB_FLAVOUR", "grub"),
             memory=getattr(request.module, "LAB_MEMORY", None))
    try:
        vm.run("start.sh", timeout=900)
        yield vm
    finally:
        vm.run("stop.sh", timeout=300)


@pytest.fixture(scope="module")
def vcsim():
    """A GPU-aware vSphere simulator (tests/vcsim) for one test file; ``vcsim.env()`` reaches it."""
    with Vcsim() as sim:
        yield sim
