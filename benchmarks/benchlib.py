# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection's benchmarks: not a public API, may change without notice.
"""What the timed benchmarks share: the machine's description, ansible-playbook runs, medians, results."""

import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.dirname(sys.executable)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.join(REPO, "tests", "unit"))


def machine():
    """Where a measurement was taken: CPU, cores, load average when it started, versions."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    version = subprocess.run([os.path.join(BIN, "ansible-playbook"), "--version"], capture_output=True,
                             text=True, check=False).stdout.splitlines()
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "ansible_core": version[0].strip() if version else "unknown",
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def ansible_env(**extra):
    """The repository's ansible.cfg, no colour, no warnings that do not concern the measurement."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
    env.update(extra)
    return env


def timed_playbook(playbook, inventory=None, extra_args=(), env=None, timeout=3600):
    """Run ansible-playbook; returns (finished process, wall seconds). Fails loudly: a failed run is no sample."""
    argv = [os.path.join(BIN, "ansible-playbook"), playbook] + list(extra_args)
    if inventory:
        argv += ["-i", inventory]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout, check=False)
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit("%s failed (rc %d):\n%s\n%s" % (
            " ".join(argv), proc.returncode, proc.stdout[-6000:], proc.stderr[-3000:]))
    return proc, seconds


def summary(samples):
    """Median, min and max of a list of seconds, and the samples themselves, rounded for the record."""
    return {"median_s": round(statistics.median(samples), 3), "min_s": round(min(samples), 3),
            "max_s": round(max(samples), 3), "samples_s": [round(s, 3) for s in samples]}


def write_result(name, result):
    """benchmarks/results/<name>.json, the input of run_all.py's results.md."""
    if "machine" in result:  # the load at the start alone can hide a busy run
        result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs",)}, indent=2, sort_keys=True))
