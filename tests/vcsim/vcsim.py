# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Start and stop vcsim-gpu, the vSphere simulator with GPU passthrough (tests/vcsim/README.md).

    with Vcsim() as vc:
        si = SmartConnect(host=vc.host, port=vc.port, user=vc.user, pwd=vc.password,
                          sslContext=ssl._create_unverified_context())

The binary is built first when needed (build.sh; about 40 s cold, instant after). It listens on a
free port of a loopback address (127.0.0.1 unless ``ip`` says otherwise) that it picks itself, so
two simulators never race for one. Its self-signed certificate is in ``cert_file`` for tests that
trust it. Every wait is bounded, and stop() always ends the process (SIGTERM, then SIGKILL).
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "build.sh")


class VcsimError(Exception):
    """The simulator could not be built or did not start."""


def build(timeout=600):
    """Build the binary if its sources changed; return its path."""
    proc = subprocess.run(["bash", BUILD], capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise VcsimError("tests/vcsim/build.sh failed:\n%s%s" % (proc.stdout, proc.stderr))
    return proc.stdout.strip().splitlines()[-1]


class Vcsim:
    """One running simulator; a context manager. ``args`` adds vcsim-gpu flags (e.g. ["-esx"])."""

    def __init__(self, user="vcsim-user", password="vcsim-pass", ip="127.0.0.1", args=(), start_timeout=30,
                 stop_timeout=10):
        self.ip = ip
        self.user = user
        self.password = password
        self.args = list(args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.url = self.host = self.port = None
        self.workdir = self.request_log = self.output = self.cert_file = None
        self._proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        binary = build()
        self.workdir = tempfile.mkdtemp(prefix="vcsim-")
        self.request_log = os.path.join(self.workdir, "requests.log")
        self.output = os.path.join(self.workdir, "vcsim.log")
        self.cert_file = os.path.join(self.workdir, "cert.pem")
        url_file = os.path.join(self.workdir, "url")
        argv = [binary, "-ip", self.ip, "-port", "0", "-url-file", url_file, "-cert-file", self.cert_file,
                "-request-log", self.request_log, "-username", self.user, "-password", self.password] + self.args
        # TMPDIR: the simulated datastores are directories it makes there; stop() removes them all.
        env = dict(os.environ, TMPDIR=self.workdir)
        with open(self.output, "wb") as out:
            self._proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env)
        try:
            self._wait_ready(url_file)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, url_file):
        deadline = time.monotonic() + self.start_timeout
        while not os.path.exists(url_file):
            if self._proc.poll() is not None:
                raise VcsimError("vcsim-gpu exited with %s:\n%s" % (self._proc.returncode, self.log_text()))
            if time.monotonic() > deadline:
                raise VcsimError("vcsim-gpu wrote no URL within %s s:\n%s" % (self.start_timeout, self.log_text()))
            time.sleep(0.05)
        with open(url_file, encoding="utf-8") as f:
            self.url = f.read().strip()
        hostport = self.url.split("//", 1)[1].split("/", 1)[0]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        # Listening already; wait until it answers HTTPS, as a client will first ask.
        while not self._answers():
            if time.monotonic() > deadline:
                raise VcsimError("vcsim-gpu at %s did not answer within %s s" % (self.url, self.start_timeout))
            time.sleep(0.05)

    def _answers(self):
        ctx = ssl._create_unverified_context()  # pylint: disable=protected-access  # its own self-signed cert
        try:
            with socket.create_connection((self.host, self.port), timeout=2) as sock:
                with ctx.wrap_socket(sock, server_hostname=self.host) as tls:
                    tls.sendall(b"GET /sdk/vimServiceVersions.xml HTTP/1.0\r\nHost: %s\r\n\r\n" % self.host.encode())
                    status_line = tls.recv(64).split(b"\r\n", 1)[0].split()
                    return status_line[1:2] == [b"200"]
        except OSError:
            return False

    def stop(self):
        """Stop the process (always, within stop_timeout plus a little) and remove its files."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.workdir and not os.environ.get("VCSIM_KEEP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def connect(self, context=None):
        """A pyVmomi session of the tests' own (not verifying the certificate unless ``context`` does)."""
        from pyVim.connect import SmartConnect  # pylint: disable=import-outside-toplevel  # tests only
        return SmartConnect(host=self.host, port=self.port, user=self.user, pwd=self.password,
                            sslContext=context or ssl._create_unverified_context())  # pylint: disable=protected-access

    def env(self, validate_certs=False):
        """The VMWARE_* environment that hands this simulator to our modules (vmware.vmware's fallbacks)."""
        return {"VMWARE_HOST": self.host, "VMWARE_PORT": str(self.port), "VMWARE_USER": self.user,
                "VMWARE_PASSWORD": self.password, "VMWARE_VALIDATE_CERTS": str(bool(validate_certs)).lower()}

    def log_text(self):
        """What the simulator printed so far."""
        try:
            with open(self.output, encoding="utf-8", errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def requests(self):
        """SOAP method names received so far, in order (one per request)."""
        try:
            with open(self.request_log, encoding="utf-8") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []


def find(service, kind, name):
    """The managed object of type ``kind`` (e.g. vim.HostSystem) named ``name``, through a container view."""
    content = service.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        return next(obj for obj in view.view if obj.name == name)
    finally:
        view.Destroy()
