# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How many vSphere API requests esxi_passthrough makes for one device and for several.

Each case starts a fresh GPU-aware simulator (tests/vcsim), runs the module once through
ansible-playbook, as users do, and counts the SOAP requests in the simulator's request log. The
goal is the same count whatever the number of devices: the host is read in bulk through the
property collector, and all devices go in one UpdatePassthruConfig.

The simulator runs with `-more-a100 5`: each host is then like an 8-GPU server (six A100s, a T4
and an Intel Flex 170, all passthrough-capable), so the cases are 1 and 8 devices. A per-device
cost would show as at least +7 requests from one case to the other.

    .venv/bin/python benchmarks/esxi_passthrough_requests.py    # after `make link`
"""

import collections
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "tests", "integration"), os.path.join(REPO, "tests", "vcsim")]

from helpers import ansible_module  # noqa: E402  pylint: disable=wrong-import-position
from vcsim import Vcsim  # noqa: E402  pylint: disable=wrong-import-position

RESULTS = os.path.join(HERE, "results", "esxi_passthrough_requests.json")
EIGHT_GPUS = ["0000:3b:00.0", "0000:af:00.0", "0000:d8:00.0",
              "0000:07:00.0", "0000:4e:00.0", "0000:87:00.0", "0000:90:00.0", "0000:b7:00.0"]
CASES = [
    ("1 device", EIGHT_GPUS[:1]),
    ("8 devices", EIGHT_GPUS),
]


def measure(devices):
    with Vcsim(args=["-more-a100", "5"]) as sim:
        started = time.monotonic()
        result = ansible_module("localhost", "passthrough.gpu.esxi_passthrough",
                                {"esxi_hostname": "DC0_H0", "devices": devices}, env=sim.env())
        elapsed = time.monotonic() - started
        requests = sim.requests()
    if not result["changed"] or sorted(d["id"] for d in result["devices"] if d["enabled"]) != sorted(devices):
        raise SystemExit("esxi_passthrough did not enable %s: %r" % (devices, result))
    return {"devices": len(devices), "requests": len(requests),
            "update_passthru_config_calls": requests.count("UpdatePassthruConfig"),
            "by_method": dict(sorted(collections.Counter(requests).items()))}, elapsed


def main():
    cases = {}
    for name, devices in CASES:
        cases[name], elapsed = measure(devices)
        print("%-24s %3d requests (%d UpdatePassthruConfig), %.1f s through ansible-playbook" % (
            name, cases[name]["requests"], cases[name]["update_passthru_config_calls"], elapsed))
    one, many = cases[CASES[0][0]], cases[CASES[-1][0]]
    report = {
        "what": "SOAP requests of one esxi_passthrough run enabling N devices on a fresh simulator "
                "(login and logout included)",
        "cases": cases,
        "ratio_many_to_one": round(float(many["requests"]) / one["requests"], 3),
        "note": "simulator started with -more-a100 5: 8 passthrough-capable GPUs per host",
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print("ratio %.3f -> %s" % (report["ratio_many_to_one"], os.path.relpath(RESULTS, REPO)))
    return 0 if many["requests"] == one["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
