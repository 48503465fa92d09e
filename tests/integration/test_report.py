# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/report.yml as users run it: Linux "hosts" on synthetic sysfs roots (connection local),
ESXi hosts on the vSphere simulator; the HTML page is rendered by headless Chromium and its table
read from the DOM Chromium built, the Markdown table read line by line.

Chromium is Debian's `chromium` (tools/bootstrap.sh installs it); without it these tests fail.
"""

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser

from helpers import REPO, run_playbook

sys.path.insert(0, os.path.join(REPO, "tests", "unit"))
from sysfs_tree import MEM32, MEM64_PREF, SysfsTree, bar_line  # noqa: E402  pylint: disable=wrong-import-position

PLAYBOOK = os.path.join(REPO, "playbooks", "report.yml")
CHROMIUM = "/usr/bin/chromium"
GIB = 1 << 30
COLUMNS = ["host", "kind", "iommu", "host-ready", "gpu", "name", "isolated", "driver", "bars", "mmio", "ready",
           "reason"]
# A device name with markup and a pipe: the page must show it as text, the Markdown cell keep it in one cell.
NASTY = "GA102 <b>RTX</b> & 3090 | Ti"
PCI_IDS = "10de  NVIDIA Corporation\n\t2204  %s\n\t1aef  GA102 High Definition Audio Controller\n" % NASTY


def ready_root(path):
    """IOMMU on; a console VGA, and an RTX 3090 + HDMI audio alone in group 8 on vfio-pci."""
    tree = SysfsTree(str(path))
    tree.iommu_unit("dmar0")
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro intel_iommu=on iommu=pt")
    tree.device("0000:00:01.0", vendor="1234", device="1111", klass="030000", driver="bochs-drm", group=1,
                boot_vga=True, resources={0: bar_line(0xFD000000, 16 << 20, MEM32)})
    tree.device("0000:00:02.0", vendor="8086", device="1901", klass="060400", driver="pcieport", group=8)
    tree.device("0000:01:00.0", driver="vfio-pci", group=8, parents=["0000:00:02.0"], boot_vga=False,
                resources={0: bar_line(0xDE000000, 16 << 20, MEM32),
                           1: bar_line(0x4000000000, 16 * GIB, MEM64_PREF)})
    tree.device("0000:01:00.1", device="1aef", klass="040300", driver="vfio-pci", group=8,
                parents=["0000:00:02.0"], resources={0: bar_line(0xDF080000, 16 << 10, MEM32)})


def blocked_root(path):
    """IOMMU on; the only GPU shares group 9 with a NIC behind a PCI bridge."""
    tree = SysfsTree(str(path))
    tree.iommu_unit("dmar0")
    tree.cmdline("BOOT_IMAGE=/vmlinuz ro intel_iommu=on")
    tree.device("0000:00:03.0", vendor="1b36", device="000c", klass="060400", driver="pcieport", group=3)
    tree.device("0000:02:00.0", vendor="1b36", device="000e", klass="060400", group=9, parents=["0000:00:03.0"])
    tree.device("0000:03:01.0", driver="nvidia", group=9, parents=["0000:00:03.0", "0000:02:00.0"],
                boot_vga=False, resources={1: bar_line(0x6000000000, 8 * GIB, MEM64_PREF)})
    tree.device("0000:03:02.0", vendor="8086", device="100e", klass="020000", driver="e1000", group=9,
                parents=["0000:00:03.0", "0000:02:00.0"])


def local_host(root):
    return {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
            "passthrough_report_root": str(root)}


def write_inventory(tmp_path, groups):
    import json  # pylint: disable=import-outside-toplevel
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(json.dumps(dict((g, {"hosts": hosts}) for g, hosts in groups.items())))  # JSON is YAML
    return str(inventory)


def run_report(tmp_path, inventory, check=False, env=None):
    (tmp_path / "pci.ids").write_text(PCI_IDS)
    args = ["-e", "passthrough_report_dir=%s" % (tmp_path / "report"),
            "-e", "passthrough_report_pci_ids=%s" % (tmp_path / "pci.ids")] + (["--check"] if check else [])
    proc = run_playbook(PLAYBOOK, inventory=inventory, extra_args=args, env=env, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, "report.yml failed (rc %d):\n%s" % (proc.returncode, output[-8000:])
    recap = re.search(r"^localhost\s*:.*changed=(\d+).*failed=(\d+)", proc.stdout, re.M)
    assert recap and recap.group(2) == "0", output[-4000:]
    return int(recap.group(1)), output


class ReadinessTable(HTMLParser):
    """The cells of table#readiness, one dict per body row keyed by the cells' classes."""

    def __init__(self):
        super().__init__()
        self.rows, self.headers = [], []
        self._in_table = self._in_head = False
        self._row = self._cell = None
        self._text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "readiness":
            self._in_table = True
        elif not self._in_table:
            return
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self._row = {}
        elif tag in ("td", "th"):
            self._cell = (attrs.get("class") or "").split()[0] if tag == "td" else "th"
            self._text = []
        elif tag in ("li", "br") and self._cell:
            self._text.append("\n")
        elif tag not in ("ul", "span", "b", "tbody", "tr") and self._cell:
            raise AssertionError("unexpected element <%s> in a cell: escaping failed" % tag)

    def handle_endtag(self, tag):
        if not self._in_table:
            return
        if tag == "table":
            self._in_table = False
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell:
            text = "".join(self._text).strip()
            if self._cell == "th":
                self.headers.append(text)
            else:
                self._row[self._cell] = text
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell:
            self._text.append(data)


def chromium_table(tmp_path, html):
    """The readiness table as headless Chromium built it from the file."""
    assert os.path.exists(CHROMIUM), ("%s is missing: Debian's chromium renders the report in this test "
                                      "(apt-get install chromium; tools/bootstrap.sh installs it)" % CHROMIUM)
    profile = tmp_path / "chromium-profile"
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--user-data-dir=%s" % profile, "--dump-dom", "file://%s" % html]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    finally:
        shutil.rmtree(str(profile), ignore_errors=True)
    assert proc.returncode == 0 and "</html>" in proc.stdout, "chromium failed (rc %d):\n%s" % (
        proc.returncode, proc.stderr[-3000:])
    parser = ReadinessTable()
    parser.feed(proc.stdout)
    assert parser.headers == ["Host", "Kind", "IOMMU", "Host ready", "GPU", "Name [ids]", "Group isolated",
                              "Driver", "BARs", "MMIO needed", "Ready", "Reason"], proc.stdout[:3000]
    for row in parser.rows:
        assert sorted(row) == sorted(COLUMNS), row
    return parser.rows


def markdown_rows(path):
    """Body rows of the Markdown table: lists of cells (escaped pipes kept inside their cell)."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    assert lines[0].startswith("| Host | Kind | IOMMU | Host ready | GPU |") and set(lines[1]) <= set("|-")
    rows = []
    for line in lines[2:]:
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        assert len(cells) == len(COLUMNS), line
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


def test_report_linux_hosts(tmp_path):
    ready_root(tmp_path / "ready")
    blocked_root(tmp_path / "blocked")
    inventory = write_inventory(tmp_path, {
        "kvm_hosts": {"gpu-ready": local_host(tmp_path / "ready")},
        "proxmox_hosts": {"gpu-blocked": local_host(tmp_path / "blocked")},
        "esxi_hosts": {},  # no ESXi host: that play just skips
    })
    report = tmp_path / "report"
    # check -> apply -> check -> apply: check mode writes nothing, the second apply changes nothing
    changed, output = run_report(tmp_path, inventory, check=True)
    assert changed == 3 and not report.exists(), output[-3000:]
    changed, output = run_report(tmp_path, inventory)
    assert changed == 3 and "Readiness report - read ESXi hosts" in output and "skipping: no hosts matched" in output
    for name in ("readiness.html", "readiness.md"):
        assert oct((report / name).stat().st_mode & 0o777) == "0o644"
    html_before = (report / "readiness.html").read_text()
    assert "<script" not in html_before and "http" not in html_before.replace("http-equiv", "")
    assert run_report(tmp_path, inventory, check=True)[0] == 0
    assert run_report(tmp_path, inventory)[0] == 0
    assert (report / "readiness.html").read_text() == html_before

    rows = chromium_table(tmp_path, report / "readiness.html")
    assert [(r["host"], r["gpu"]) for r in rows] == [
        ("gpu-ready", "0000:00:01.0"), ("gpu-ready", "0000:01:00.0"), ("gpu-blocked", "0000:03:01.0")]
    console, rtx, shared = rows
    assert (console["ready"], console["host-ready"]) == ("no", "yes")
    assert console["reason"].startswith("console GPU (boot_vga)")
    assert rtx == {
        "host": "gpu-ready", "kind": "KVM/libvirt", "iommu": "on (intel)", "host-ready": "yes",
        "gpu": "0000:01:00.0", "name": "NVIDIA Corporation %s [10de:2204]" % NASTY,
        "isolated": "yes (group 8)", "driver": "vfio-pci, vfio-pci on 0000:01:00.1",
        "bars": "BAR0 16 MiB mem\nBAR1 16 GiB mem, 64-bit, prefetchable\n.1 BAR0 16 KiB mem",
        "mmio": "32 GB (bars rule; ESXi pciPassthru.64bitMMIOSizeGB, OVMF X-PciMmio64Mb=32768)",
        "ready": "yes", "reason": "nothing missing"}
    assert shared["kind"] == "Proxmox VE" and shared["ready"] == "no" and shared["host-ready"] == "no"
    assert shared["isolated"] == "no: group 9 shared with 0000:03:02.0 [8086:100e]"
    assert shared["reason"] == "IOMMU group 9 is shared with 0000:03:02.0 [8086:100e]"
    assert shared["bars"] == "BAR1 8 GiB mem, 64-bit, prefetchable"

    md = markdown_rows(report / "readiness.md")
    assert [(r["host"], r["gpu"], r["ready"]) for r in md] == [
        ("gpu-ready", "0000:00:01.0", "no"), ("gpu-ready", "0000:01:00.0", "yes"),
        ("gpu-blocked", "0000:03:01.0", "no")]
    # HTML-escaped in Markdown too (renderers take raw HTML), the pipe escaped inside its cell
    assert md[1]["name"] == "NVIDIA Corporation GA102 &lt;b&gt;RTX&lt;/b&gt; &amp; 3090 | Ti [10de:2204]"
    assert md[2]["isolated"] == "no: group 9 shared with 0000:03:02.0 [8086:100e]"
    assert md[1]["bars"] == "BAR0 16 MiB mem; BAR1 16 GiB mem, 64-bit, prefetchable; .1 BAR0 16 KiB mem"
    assert "1 of 2 hosts ready, 0 pending; 1 of 3 GPUs ready, 0 pending." in (report / "readiness.md").read_text()


def test_report_esxi_and_unreadable_hosts(tmp_path, vcsim):
    connection = {"esxi_host_vcenter_hostname": vcsim.host, "esxi_host_vcenter_port": vcsim.port,
                  "esxi_host_vcenter_username": vcsim.user, "esxi_host_vcenter_password": vcsim.password,
                  "esxi_host_vcenter_validate_certs": False}
    inventory = write_inventory(tmp_path, {
        "kvm_hosts": {"gone": local_host(tmp_path / "no-such-root")},
        "esxi_hosts": {
            "DC0_H0": connection,
            "esx-t4": dict(connection, esxi_host_name="DC0_C0_H0", passthrough_report_esxi_devices=["Tesla T4"]),
            "esx-badpass": dict(connection, esxi_host_name="DC0_C0_H1",
                                esxi_host_vcenter_password="not-the-password"),
        },
    })
    changed, output = run_report(tmp_path, inventory)
    assert changed == 3
    assert vcsim.password not in output.replace("not-the-password", "")

    rows = chromium_table(tmp_path, tmp_path / "report" / "readiness.html")
    by_host = {}
    for row in rows:
        by_host.setdefault(row["host"], []).append(row)
    assert list(by_host) == ["gone", "DC0_H0", "esx-t4", "esx-badpass"]
    gone, = by_host["gone"]
    assert (gone["gpu"], gone["ready"], gone["iommu"]) == ("-", "no", "unknown")
    assert gone["reason"].startswith("no facts: ") and "no-such-root" in gone["reason"]
    # the simulator's GPUs with passthrough off: capable ones wait for it, the console VGA cannot
    esxi = dict((r["gpu"], r) for r in by_host["DC0_H0"])
    assert sorted(esxi) == ["0000:02:00.0", "0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0"]
    assert esxi["0000:3b:00.0"]["name"] == "NVIDIA Corporation GA100 [A100 PCIe 40GB] [10de:20f1]"
    assert esxi["0000:3b:00.0"]["ready"] == "pending" and esxi["0000:3b:00.0"]["host-ready"] == "pending"
    assert esxi["0000:3b:00.0"]["reason"].startswith("enable pending: DirectPath I/O is off")
    assert esxi["0000:02:00.0"]["ready"] == "no" and "not passthrough-capable" in esxi["0000:02:00.0"]["reason"]
    assert esxi["0000:3b:00.0"]["kind"] == "VMware ESXi"
    t4, = by_host["esx-t4"]
    assert t4["gpu"] == "0000:af:00.0" and t4["ready"] == "pending"
    bad, = by_host["esx-badpass"]
    assert bad["ready"] == "no" and bad["reason"].startswith("no facts: ")
    md = markdown_rows(tmp_path / "report" / "readiness.md")
    assert len(md) == len(rows) and [r["gpu"] for r in md] == [r["gpu"] for r in rows]


def test_report_with_empty_groups(tmp_path):
    inventory = write_inventory(tmp_path, {"kvm_hosts": {}, "proxmox_hosts": {}, "esxi_hosts": {}})
    assert run_report(tmp_path, inventory)[0] == 3
    assert "0 of 0 hosts ready" in (tmp_path / "report" / "readiness.md").read_text()
    assert markdown_rows(tmp_path / "report" / "readiness.md") == []
    assert chromium_table(tmp_path, tmp_path / "report" / "readiness.html") == []
