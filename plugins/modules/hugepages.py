#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: hugepages
short_description: Reserve 2M or 1G huge pages now and at every boot, host-wide or per NUMA node
version_added: 0.1.0
description:
  - Sets the number of huge pages of one size, for the running kernel (O(runtime)) and for every
    boot (O(persistent)), host-wide or on each listed NUMA node.
  - "Runtime: writes C(nr_hugepages) under C(/sys/kernel/mm/hugepages/hugepages-<kB>kB/) (host-wide) or
    C(/sys/devices/system/node/node<N>/hugepages/hugepages-<kB>kB/) (per node). When the kernel gives
    fewer pages than asked, caches are dropped (C(/proc/sys/vm/drop_caches)) and memory compacted
    (C(/proc/sys/vm/compact_memory)), then the write is retried, 3 times at most. RV(pages) reports
    what the kernel actually gave, re-read from sysfs."
  - "A runtime shortfall fails the module when O(persistent=false). With O(persistent=true) it is a
    warning: the boot-time reservation is configured, and a reboot gives the pages (1G pages in
    particular can rarely be found in one piece once memory has been used)."
  - "Persistent: 2M pages host-wide go into C(/etc/sysctl.d/80-passthrough-gpu-hugepages.conf)
    (C(vm.nr_hugepages), owned by this module). 1G pages, and per-node requests of either size, go on
    the kernel command line through the same code as M(passthrough.gpu.iommu_kernel_args):
    C(default_hugepagesz=1G hugepagesz=1G hugepages=N), or C(hugepages=0:N,1:N) per node (Linux 5.7+).
    The sysctl file is then removed, so the two never fight."
  - Refuses, before changing anything, more pages than the host (or a node) has memory, naming how
    much there is; a NUMA node that does not exist; and 1G pages on a CPU without C(pdpe1gb).
  - Never reboots; RV(reboot_required) says when the kernel arguments are not in effect yet.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._bootloader
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: RV(pages) shows the count that would be asked for; the kernel may give less.
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  size:
    description: Page size.
    type: str
    choices: [2M, 1G]
    default: 2M
  count:
    description:
      - Number of pages; on each node of O(nodes) when given, else for the host. C(0) frees them.
      - Exactly one of O(count) and O(memory).
    type: int
  memory:
    description:
      - Memory to hold in huge pages, like C(16G), C(512M) or C(1GiB) (binary units); must be a whole
        number of pages. Per node when O(nodes) is given.
    type: str
  nodes:
    description:
      - NUMA nodes to reserve pages on, each getting O(count) pages. Unset means host-wide (the kernel
        spreads the pages over the nodes).
    type: list
    elements: int
  runtime:
    description:
      - Set the running kernel's pool now (only when O(root=/); otherwise a warning says it was skipped).
      - O(runtime=false) with O(persistent=false) is refused, since it leaves nothing to do.
    type: bool
    default: true
  persistent:
    description: Configure the pages for every boot.
    type: bool
    default: true
  mount_path:
    description:
      - Also mount a hugetlbfs of this page size here, through a systemd mount unit owned by this module
        (C(/etc/systemd/system/<escaped path>.mount), C(WantedBy=sysinit.target)), enabled and started
        when it changes. Handy for a second page size next to the default C(/dev/hugepages).
      - Only with O(persistent=true).
      - Refused when it is a system directory (C(/boot), C(/var), anything under C(/usr) or C(/etc) ...),
        a directory that is not empty, or a path whose mount unit exists and was not written by this module.
    type: path
notes:
  - Only one huge page size at a time is configured on the kernel command line by this module.
  - C(vm.nr_hugepages) counts pages of the default size, so 2M through sysctl is refused while the
    default size is 1G (C(default_hugepagesz=1G) on the command line).
seealso:
  - module: passthrough.gpu.iommu_kernel_args
"""

EXAMPLES = r"""
- name: 8 GiB of 2M pages now and at every boot
  passthrough.gpu.hugepages:
    size: 2M
    memory: 8G

- name: Sixteen 1G pages from boot, hugetlbfs at /dev/hugepages1G
  passthrough.gpu.hugepages:
    size: 1G
    count: 16
    runtime: false
    mount_path: /dev/hugepages1G
  register: huge

- name: Reboot for the 1G pages
  ansible.builtin.reboot:
  when: huge.reboot_required

- name: 4096 2M pages on NUMA node 1 only, for a guest pinned there
  passthrough.gpu.hugepages:
    count: 4096
    nodes: [1]
"""

RETURN = r"""
size:
  description: Page size.
  returned: always
  type: str
  sample: 1G
count:
  description: Pages asked for (per node when RV(nodes) is not empty).
  returned: always
  type: int
  sample: 16
nodes:
  description: NUMA nodes asked for; empty for host-wide.
  returned: always
  type: list
  elements: int
  sample: []
pages:
  description:
    - The running kernel's pools, keyed C(all) (host-wide) or C(node<N>); empty when O(runtime=false)
      or O(root) is not C(/).
  returned: always
  type: dict
  sample: {all: {before: 0, requested: 512, after: 512}}
  contains:
    before:
      description: Pages before this run.
      type: int
    requested:
      description: Pages asked for.
      type: int
    after:
      description: Pages the kernel gave, re-read (in check mode, the count that would be asked for).
      type: int
persistent_via:
  description: C(sysctl), C(kernel_args), or null when O(persistent=false).
  returned: always
  type: str
  sample: kernel_args
bootloader:
  description: The bootloader used for kernel arguments, or null when none were needed.
  returned: always
  type: str
  sample: grub
args:
  description: The kernel arguments managed (empty when persisting through sysctl).
  returned: always
  type: list
  elements: str
  sample: [default_hugepagesz=1G, hugepagesz=1G, hugepages=16]
cmdline_current:
  description: The running kernel's command line, or null when it cannot be read.
  returned: always
  type: str
  sample: BOOT_IMAGE=/boot/vmlinuz-6.1.0-50-amd64 root=UUID=0c1b ro quiet
cmdline_next:
  description: Arguments configured for the next boot (as in M(passthrough.gpu.iommu_kernel_args)); empty with sysctl.
  returned: always
  type: str
  sample: quiet default_hugepagesz=1G hugepagesz=1G hugepages=16
reboot_required:
  description: Whether the running kernel lacks the kernel arguments configured for the pages.
  returned: always
  type: bool
  sample: true
commands:
  description: Commands run (in check mode, that would run), as argv lists.
  returned: always
  type: list
  elements: list
  sample: [[update-grub]]
commands_skipped:
  description: Commands needed but not run because O(root) is not C(/).
  returned: always
  type: list
  elements: list
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _bootloader, _hugepages


def ensure_hugepages(module):
    params = module.params
    root, size, nodes = params["root"], params["size"], params["nodes"] or []
    if not params["runtime"] and not params["persistent"]:
        # A run that can only ever report ok would hide a typo in a playbook's variables.
        raise _hugepages.HugepagesError("runtime and persistent are both false: nothing to do; "
                                        "set runtime=true (pages now) or persistent=true (pages from boot)")
    live = _argspec.root_is_live(root)
    count = _hugepages.page_count(size, params["count"], params["memory"])
    _hugepages.validate(root, size, count, nodes)
    mount_path = None
    if params["mount_path"]:
        if not params["persistent"]:
            raise _hugepages.HugepagesError("mount_path needs persistent=true (the mount is a systemd unit)")
        mount_path = _hugepages.validate_mount_path(params["mount_path"])
    run, query, resolve = _bootloader.module_runner(module, live)
    result = {"size": size, "count": count, "nodes": nodes, "pages": {}, "persistent_via": None,
              "bootloader": None, "args": [], "cmdline_current": _bootloader.read_cmdline(root),
              "cmdline_next": "", "reboot_required": False, "commands": [], "commands_skipped": []}
    warnings, changed, diff = [], False, []
    if params["persistent"]:
        plan = _hugepages.plan_persistent(root, size, count, nodes, params["bootloader"], query, mount_path)
        resolve(plan)
        try:
            applied = _bootloader.apply_plan(plan, run, live, module.check_mode)
        except _bootloader.BootloaderError as exc:
            raise _hugepages.HugepagesError(str(exc))
        result.update(_bootloader.plan_result(plan, applied))
        result["persistent_via"] = "kernel_args" if plan.bootloader else "sysctl"
        changed, diff = plan.changed, plan.diff()
    if params["runtime"] and not live:
        warnings.append("runtime pages not set: root is %s, not this host's /" % root)
    elif params["runtime"]:
        result["pages"] = _hugepages.ensure_runtime(root, size, count, nodes, module.check_mode)
        changed = changed or any(p["before"] != p["requested"] for p in result["pages"].values())
        short = _hugepages.shortfall(result["pages"], size)
        if short and not params["persistent"]:
            raise _hugepages.HugepagesError(short)
        if short:
            warnings.append(short + "; the boot-time reservation is configured: reboot to get them")
    result["changed"] = changed
    if module._diff:
        result["diff"] = diff
    return result, warnings


def main():
    argument_spec = dict(_argspec.hugepages_options(), mount_path={"type": "path"})
    argument_spec.update(_argspec.bootloader_argument_spec())
    argument_spec.update(_argspec.root_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           mutually_exclusive=[("count", "memory")], required_one_of=[("count", "memory")])
    try:
        result, warnings = ensure_hugepages(module)
    except (_hugepages.HugepagesError, _bootloader.BootloaderError) as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
