# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the benchmarks and write benchmarks/results.md from benchmarks/results/*.json (`make bench`).

    .venv/bin/python benchmarks/run_all.py                 # every benchmark, then results.md
    .venv/bin/python benchmarks/run_all.py facts_vs_ping   # only these, then results.md from all results
    .venv/bin/python benchmarks/run_all.py --render        # only results.md

Each benchmark writes its own JSON; results.md is rendered from whatever results/ holds, and says when
each was taken. Exit status: 0 when every goal is met, 1 when one is missed, 2 when a benchmark
failed to produce a result (its old JSON, if any, is then still rendered, marked stale).
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
# In this order: counts first (cheap), then the timings; the lab last (it boots a VM).
BENCHMARKS = ["esxi_passthrough_requests", "kvm_host_noop", "facts_vs_ping", "kvm_host_fleet", "lab_sysfs_scan"]
ARGS = {"kvm_host_fleet": ["100", "5"]}


def load(name):
    try:
        with open(os.path.join(RESULTS, name + ".json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def written(name):
    try:
        return os.stat(os.path.join(RESULTS, name + ".json")).st_mtime_ns
    except OSError:
        return None


def verdict(ok):
    return "pass" if ok else "**FAIL**"


def how(machine):
    end = machine.get("load_average_at_end")
    return ("%s UTC; %s, nproc %s, load average (1/5/15 min) %s at start%s; %s; Python %s"
            % (machine["started_utc"], machine["cpu"], machine["nproc"],
               " / ".join(str(x) for x in machine["load_average_at_start"]),
               ", %s at end" % " / ".join(str(x) for x in end) if end else "",
               machine["ansible_core"], machine["python"]))


def section_a(res):
    rows = [("facts (iommu_facts + gpu_facts)", res["facts"]), ("ping (1 task)", res["ping"]),
            ("ping twice (2 tasks, for reference)", res["ping_twice"]),
            ("iommu_facts alone (1 task, for reference)", res.get("iommu_facts_alone")),
            ("gpu_facts alone (1 task, for reference)", res.get("gpu_facts_alone")),
            ("the two modules' reads in one Python process, no Ansible", res["in_process_reads"])]
    summary = ("%.2fx (facts %.2f s / ping %.2f s)" % (res["ratio_facts_to_ping"], res["facts"]["median_s"],
                                                       res["ping"]["median_s"]), "<= %.2fx" % res["goal_max_ratio"],
               verdict(res["pass"]))
    tree = res["tree"]
    lines = ["## (a) iommu_facts + gpu_facts on a %d-function tree vs ansible.builtin.ping" % tree["functions"], "",
             "Script: `facts_vs_ping.py`. Tree: %s (%d IOMMU groups, %d GPUs). Timed: %s. Repetitions: %d." % (
                 tree["layout"], tree["iommu_groups"], tree["gpus"], res["what_is_timed"], res["repetitions"]),
             "Taken: %s." % how(res["machine"]), "",
             "| run | median s | min s | max s |", "| --- | --- | --- | --- |"]
    rows += [("the %s module's AnsiballZ payload alone (module side of one task)" % n, r)
             for n, r in sorted(res.get("module_payloads_alone", {}).items())]
    lines += ["| %s | %.3f | %.3f | %.3f |" % (n, r["median_s"], r["min_s"], r["max_s"]) for n, r in rows if r]
    payloads = res.get("module_payloads_alone", {})
    if all(n in payloads for n in ("ping", "iommu_facts", "gpu_facts")):
        lines += ["", "Where the time goes: run alone, the payloads take iommu_facts %.2f s + gpu_facts %.2f s vs "
                  "ping %.2f s (module side); the rest of a task is the controller's (its setup, and taking in the "
                  "result: iommu_facts returns every device of the tree)." % (
                      payloads["iommu_facts"]["median_s"], payloads["gpu_facts"]["median_s"],
                      payloads["ping"]["median_s"])]
    lines += ["", "Ratio facts / ping: **%.2fx** (goal <= %.2fx): %s. For reference: facts / two pings %.2fx, "
              "two pings / ping %.2fx, iommu_facts alone / ping %s, gpu_facts alone / ping %s." % (
                  res["ratio_facts_to_ping"], res["goal_max_ratio"], verdict(res["pass"]),
                  res["ratio_facts_to_ping_twice"], res["ping_twice"]["median_s"] / res["ping"]["median_s"],
                  "%.2fx" % res["ratio_iommu_facts_alone_to_ping"] if "ratio_iommu_facts_alone_to_ping" in res else "-",
                  "%.2fx" % res["ratio_gpu_facts_alone_to_ping"] if "ratio_gpu_facts_alone_to_ping" in res else "-")]
    twice = res["ping_twice"]["median_s"] / res["ping"]["median_s"]
    if twice > res["goal_max_ratio"]:
        lines += ["", "The floor: two pings take %.2fx one ping in this run, above the goal, so no play of two tasks "
                  "(iommu_facts, then gpu_facts) can meet it here, whatever the modules do; what Ansible adds per "
                  "task outweighs the reading of the tree." % twice]
    return summary, lines


def section_b(res):
    inside, through, hand = res["in_vm"], res["ansible"], res["guide_by_hand"]
    summary = ("%.1fx faster in the VM (loop %.2f s / module %.2f s); %.1fx through ansible-playbook" % (
        inside["speedup"], inside["loop"]["median_s"], inside["module"]["median_s"], through["speedup"]),
        ">= %.0fx faster" % res["goal_min_speedup"], verdict(res["pass"]))
    vm = res["vm"]
    lines = ["## (b) iommu_facts vs the guides' lspci loop, lab VM with %d PCI functions" % vm["pci_functions"], "",
             "Script: `lab_sysfs_scan.py`. VM: the grub lab (%s) with extra root ports, a PCIe switch, a "
             "PCIe-to-PCI bridge and multifunction devices: %d PCI functions in %d IOMMU groups; kernel %s, %s; "
             "booted in %.0f s. Repetitions: %d, alternating, after one warm-up each." % (
                 "QEMU TCG, q35, emulated Intel IOMMU", vm["pci_functions"], vm["iommu_groups"], vm["kernel"],
                 vm["python3"], res["vm_boot_s"], res["repetitions"]),
             "Taken: %s." % how(res["machine"]), "",
             "The loop: `%s`" % res["loop"], "",
             "| measurement | what is timed | module median s | loop median s | loop / module |",
             "| --- | --- | --- | --- | --- |",
             "| in the VM (goal) | %s | %.2f | %.2f | **%.1fx** |" % (
                 inside["what_is_timed"], inside["module"]["median_s"], inside["loop"]["median_s"], inside["speedup"]),
             "| through Ansible | %s | %.2f | %.2f | %.1fx |" % (
                 through["what_is_timed"], through["module"]["median_s"], through["loop"]["median_s"],
                 through["speedup"]),
             "| by hand | %s | %.2f | %.2f | %.1fx |" % (
                 hand["what_is_timed"], through["module"]["median_s"], hand["loop_over_ssh"]["median_s"],
                 hand["speedup_vs_module_playbook"]),
             "", "Goal: the module >= %.0fx faster in the VM: %s." % (res["goal_min_speedup"], verdict(res["pass"]))]
    return summary, lines


def section_c(res):
    forks = sorted(res["by_forks"], key=int)
    first = res["by_forks"][forks[0]]
    summary = ("; ".join("forks %s: %.2fx (%.0f s / %.0f s)" % (
        f, res["by_forks"][f]["ratio_noop_to_facts"], res["by_forks"][f]["noop"]["seconds"],
        res["by_forks"][f]["facts"]["seconds"]) for f in forks)
        + "; %d module runs per host" % first["noop_module_runs_per_real_host"],
        "<= %.0fx and <= %d runs per host" % (res["goal_max_ratio"], res["goal_max_module_runs_per_host"]),
        verdict(res["pass"]))
    lines = ["## (c) no-op converge of roles/kvm_host vs facts only, %d hosts" % res["hosts"], "",
             "Script: `kvm_host_fleet.py`. %d inventory hosts, local connection, each with its own converged "
             "synthetic root (the lab's PCI layout). Timed: %s." % (res["hosts"], res["what_is_timed"]),
             "Taken: %s." % how(res["machine"]), "",
             "| forks | facts-only s | no-op converge s | ratio | module runs per host: facts / no-op (+1 package task "
             "on a real host) | changed |", "| --- | --- | --- | --- | --- | --- |"]
    for f in forks:
        run = res["by_forks"][f]
        lines.append("| %s | %.1f | %.1f | %.2fx %s | %d / %d (%d) | %d |" % (
            f, run["facts"]["seconds"], run["noop"]["seconds"], run["ratio_noop_to_facts"], verdict(run["pass_ratio"]),
            run["facts"]["module_runs_per_host"], run["noop"]["module_runs_per_host"],
            run["noop_module_runs_per_real_host"], run["noop"]["changed_tasks_all_hosts"]))
    if "samples" in first["facts"]:
        lines += ["", "Every run (s), in the order of the rounds: " + "; ".join(
            "forks %s: facts-only %s, no-op %s, modules alone %s" % (
                f, ", ".join("%.1f" % x for x in res["by_forks"][f]["facts"]["samples"]),
                ", ".join("%.1f" % x for x in res["by_forks"][f]["noop"]["samples"]),
                ", ".join("%.1f" % x for x in res["by_forks"][f]["modules_alone"]["samples"])) for f in forks) + "."]
    if first["noop"].get("tasks_ok_per_host") is not None:
        lines += ["", "Tasks per host from the recap (module runs and controller-only actions such as set_fact, "
                  "assert, include_tasks): facts-only %d ran; no-op converge %d ran, %d skipped." % (
                      first["facts"]["tasks_ok_per_host"], first["noop"]["tasks_ok_per_host"],
                      first["noop"]["tasks_skipped_per_host"])]
    if "modules_alone" in first:
        lines += ["", "Reference, not judged: the role's %d module runs as bare tasks with its arguments and no "
                  "controller-side task (the floor of any role built on these modules): %s." % (
                      first["modules_alone"]["module_runs_per_host"], "; ".join(
                          "forks %s: %.1f s, %.2fx the facts-only run" % (
                              f, res["by_forks"][f]["modules_alone"]["seconds"],
                              res["by_forks"][f]["ratio_modules_alone_to_facts"]) for f in forks))]
    lines += ["", "Module runs of the no-op converge on each host: %s." % ", ".join(
        "`%s`" % a.rsplit(".", 1)[-1] for a in first["noop"]["actions"]),
        "Goals: ratio <= %.0fx: %s; <= %d module runs per host: %s." % (
            res["goal_max_ratio"], verdict(all(r["pass_ratio"] for r in res["by_forks"].values())),
            res["goal_max_module_runs_per_host"], verdict(all(r["pass_calls"] for r in res["by_forks"].values())))]
    return summary, lines


def section_d(res):
    one, many = res["cases"]["1 device"], res["cases"]["8 devices"]
    ok = one["requests"] == many["requests"]
    summary = ("%d requests for 1 device, %d for 8" % (one["requests"], many["requests"]), "equal counts", verdict(ok))
    lines = ["## (d) vSphere requests per esxi_passthrough run, 1 vs 8 GPUs", "",
             "Script: `esxi_passthrough_requests.py`. %s; %s. Counts, the same on every machine." % (
                 res["what"], res["note"]), "",
             "| case | requests | UpdatePassthruConfig |", "| --- | --- | --- |",
             "| 1 device | %d | %d |" % (one["requests"], one["update_passthru_config_calls"]),
             "| 8 devices | %d | %d |" % (many["requests"], many["update_passthru_config_calls"]),
             "", "Goal: equal counts: %s." % verdict(ok)]
    return summary, lines


def section_noop(res):
    cases = ("lab_gpu", "amd_gpu_with_vendor_reset")
    ok = all(res[c]["within_budget"] for c in cases)
    lines = ["## kvm_host no-op converge on one host (module runs)", "",
             "Script: `kvm_host_noop.py`. %s." % res["how_counted"], "",
             "| case | module runs (real host) | changed |", "| --- | --- | --- |"]
    lines += ["| %s | %d | %d |" % (c, res[c]["total_on_a_real_host"], res[c]["noop_converge"]["changed"]) for c in cases]
    lines += ["", "Goal: <= %d module runs and nothing changed: %s." % (res["budget"], verdict(ok))]
    return ok, lines


def render(stale=()):
    sections = [("a", "facts_vs_ping", section_a), ("b", "lab_sysfs_scan", section_b),
                ("c", "kvm_host_fleet", section_c), ("d", "esxi_passthrough_requests", section_d)]
    table = ["| | measurement | result | goal | verdict |", "| --- | --- | --- | --- | --- |"]
    body = []
    all_ok = True
    titles = {"a": "facts modules vs ping, 1,024 functions", "b": "facts module vs lspci loop, lab VM",
              "c": "kvm_host no-op vs facts, 100 hosts", "d": "esxi_passthrough requests, 1 vs 8 GPUs"}
    for letter, name, build in sections:
        res = load(name)
        if res is None:
            table.append("| (%s) | %s | not measured | | **MISSING** |" % (letter, titles[letter]))
            all_ok = False
            continue
        (result, goal, ok), lines = build(res)
        if name in stale:
            lines.insert(1, "\n**Stale:** the last run of `%s.py` failed; these are older numbers.\n" % name)
        all_ok = all_ok and ok == "pass" and name not in stale
        table.append("| (%s) | %s | %s | %s | %s |" % (letter, titles[letter], result, goal, ok))
        body += [""] + lines
    noop = load("kvm_host_noop")
    if noop is not None:
        noop_ok, lines = section_noop(noop)
        body += [""] + lines
        all_ok = all_ok and noop_ok
    text = ["# Benchmark results", "",
            "Written by `benchmarks/run_all.py` (`make bench`) from `benchmarks/results/*.json`; do not edit by "
            "hand. Each section says when and where its numbers were taken. Timings are medians of alternating "
            "runs; the machine may be shared, so read them with the load averages and the min / max next to "
            "them. How each is measured: `benchmarks/README.md` and each script's docstring.", ""] + table + body
    with open(os.path.join(HERE, "results.md"), "w") as handle:
        handle.write("\n".join(text) + "\n")
    return all_ok


def main(argv):
    names = [a for a in argv if not a.startswith("-")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit("unknown benchmark(s) %s; known: %s" % (", ".join(unknown), ", ".join(BENCHMARKS)))
    if "--render" in argv:
        names = []
    elif not names:
        names = BENCHMARKS
    failed = []
    for name in names:
        started = time.monotonic()
        before = written(name)
        print("== %s" % name, flush=True)
        rc = subprocess.call([sys.executable, os.path.join(HERE, name + ".py")] + ARGS.get(name, []))
        print("== %s: exit %d after %.0f s" % (name, rc, time.monotonic() - started), flush=True)
        # Exit 1 means a missed goal or a failure alike (SystemExit("...") exits 1): a fresh result file tells.
        if written(name) == before:
            failed.append(name)
    ok = render(stale=failed)
    print("wrote %s" % os.path.join(HERE, "results.md"))
    return 2 if failed else (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
