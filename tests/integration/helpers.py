# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ansible for real (the CLI, as users do) and compare module output with lspci."""

import json
import os
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.dirname(sys.executable)


def ansible_env(**extra):
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(REPO, "ansible.cfg"),
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
    })
    env.update(extra)
    return env


def ansible_module(host, module, args="", inventory=None, env=None, timeout=600):
    """Run ``ansible HOST -m MODULE -a ARGS`` and return that host's result."""
    argv = [os.path.join(BIN, "ansible"), host, "--one-line", "-m", module]
    if args:
        argv += ["-a", args]
    if inventory:
        argv += ["-i", inventory]
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)
    # --one-line prints "HOST | STATUS => {json}" per host.
    prefix = "%s | " % host
    lines = [line for line in proc.stdout.splitlines() if line.startswith(prefix)]
    assert proc.returncode == 0 and lines, "ansible rc %d:\n%s\n%s" % (
        proc.returncode, proc.stdout[:4000], proc.stderr[:4000])
    return json.loads(lines[0].split(" => ", 1)[1])


def compare_with_lspci(devices, truth):
    """Every device lspci shows, with the fields lspci shows, as the module reported it."""
    assert sorted(devices) == sorted(truth), "device lists differ"
    for address, seen in truth.items():
        got = devices[address]
        where = "%s: " % address
        assert (got["vendor_id"], got["device_id"]) == (seen["vendor_id"], seen["device_id"]), where + "ids"
        assert got["class"] == seen["class"], where + "class"
        assert got["revision"] == seen["revision"], where + "revision"
        if seen["subsystem"]:
            assert (got["subsystem_vendor_id"], got["subsystem_device_id"]) == seen["subsystem"], where + "subsystem"
        assert got["driver"] == seen["driver"], where + "driver"
        if seen["iommu_group"] is not None:
            assert got["iommu_group"] == seen["iommu_group"], where + "iommu group"
        bars = dict((b["index"], b) for b in got["bars"])
        assert sorted(bars) == sorted(seen["bars"]), where + "BAR indexes"
        for index, region in seen["bars"].items():
            for key, value in region.items():
                assert bars[index][key] == value, where + "BAR%d %s" % (index, key)
        if seen["rom_size_bytes"] is not None:
            assert got["rom_size_bytes"] == seen["rom_size_bytes"], where + "ROM size"
