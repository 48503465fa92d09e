#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: host_config
short_description: Huge pages, kernel arguments and vfio-pci on a Linux host in one module run
version_added: 0.2.0
description:
  - Does in one run what M(passthrough.gpu.hugepages), M(passthrough.gpu.iommu_kernel_args) and
    M(passthrough.gpu.vfio_bind) (binding O(vfio.devices)) do one after the other, with their code and
    their checks, plus one of its own (a huge page argument in O(kernel_args.args)). On a host that is
    already configured, a run of Ansible costs mostly its module runs, and this is one instead of three.
  - Every part is checked and planned before the first change, so a bad value in any part (more
    pages than memory, an unknown device, a dirty IOMMU group, an unparsable GRUB file, a missing
    bootloader or initramfs program) changes nothing at all.
  - "The kernel arguments of O(kernel_args) and those of 1G or per-node huge pages are one edit of the
    boot configuration followed by one regeneration (C(update-grub), C(proxmox-boot-tool refresh) ...);
    if that fails, the files are put back byte for byte. 2M pages host-wide persist through
    C(/etc/sysctl.d/80-passthrough-gpu-hugepages.conf) as in M(passthrough.gpu.hugepages)."
  - Then, in this order, the running kernel's huge page pools are set and the devices are bound to
    C(vfio-pci) with their modprobe.d and initramfs configuration (rebuilt only when it changed).
    A part that fails after an earlier part changed the host says which parts were done.
  - Never reboots; RV(reboot_required) says whether the running kernel lacks the arguments or
    whether a device is not on C(vfio-pci) yet.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._bootloader
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Same result shape; no file, no sysfs write and no command.
  diff_mode:
    support: full
    details: One entry per file, plus a C(PCI drivers) entry when drivers change at runtime.
  idempotent:
    support: full
options:
  hugepages:
    description:
      - Huge pages of one size, as M(passthrough.gpu.hugepages) sets them. Unset leaves them alone.
    type: dict
    suboptions:
      size:
        description: Page size.
        type: str
        choices: [2M, 1G]
        default: 2M
      count:
        description: Number of pages, on each node of O(hugepages.nodes) when given; exactly one of this and O(hugepages.memory).
        type: int
      memory:
        description: Memory to hold in huge pages, like C(16G); a whole number of pages.
        type: str
      nodes:
        description: NUMA nodes, each getting the pages. Unset means host-wide.
        type: list
        elements: int
      runtime:
        description: Set the running kernel's pools now (only when O(root=/); otherwise a warning says it was skipped).
        type: bool
        default: true
      persistent:
        description: Configure the pages for every boot.
        type: bool
        default: true
  kernel_args:
    description:
      - Kernel arguments for the next boot, as M(passthrough.gpu.iommu_kernel_args) with O(passthrough.gpu.iommu_kernel_args#module:state=present)
        adds them. Unset leaves the kernel command line alone (but for the huge pages' arguments).
    type: dict
    suboptions:
      iommu:
        description: The IOMMU arguments to add; V(auto) picks them from the platform's IOMMU.
        type: str
        choices: [auto, intel, amd, none]
        default: auto
      args:
        description: Further arguments, like C(video=efifb:off); they win over the IOMMU arguments on a shared key.
        type: list
        elements: str
        default: []
  vfio:
    description:
      - Devices to hand to C(vfio-pci), as M(passthrough.gpu.vfio_bind) with O(passthrough.gpu.vfio_bind#module:state=bound)
        does. Unset leaves every driver alone.
    type: dict
    suboptions:
      devices:
        description: PCI addresses or C(vendor:device) ids.
        type: list
        elements: str
        required: true
      include_group:
        description: Also take the other endpoint functions of each device's IOMMU group.
        type: bool
        default: true
      allow_shared_group:
        description: Go on (with a warning) when a device's IOMMU group holds other devices than its own functions.
        type: bool
        default: false
      force:
        description: Take the console GPU (C(boot_vga)) anyway.
        type: bool
        default: false
      runtime:
        description: Rebind now (only when O(root=/)).
        type: bool
        default: true
      persistent:
        description: The modprobe.d file and the initramfs, for every boot.
        type: bool
        default: true
      blacklist:
        description: Driver modules to blacklist (only on request).
        type: list
        elements: str
        default: []
      initramfs:
        description: The initramfs generator; V(auto) detects it, V(none) leaves the initramfs alone.
        type: str
        choices: [auto, initramfs-tools, dracut, mkinitcpio, none]
        default: auto
notes:
  - Needs at least one of O(hugepages), O(kernel_args) and O(vfio).
seealso:
  - module: passthrough.gpu.hugepages
  - module: passthrough.gpu.iommu_kernel_args
  - module: passthrough.gpu.vfio_bind
"""

EXAMPLES = r"""
- name: IOMMU on, 8 GiB of 2M pages, and the GPU on vfio-pci, in one run
  passthrough.gpu.host_config:
    kernel_args:
      iommu: auto
    hugepages:
      memory: 8G
    vfio:
      devices: ['0000:01:00.0']
  register: host

- name: Reboot when the kernel arguments or the binding need it
  ansible.builtin.reboot:
  when: host.reboot_required
"""

RETURN = r"""
bootloader:
  description: The bootloader whose configuration holds the kernel arguments, or null when none were managed.
  returned: always
  type: str
  sample: grub
args:
  description: The kernel arguments managed, the huge pages' included.
  returned: always
  type: list
  elements: str
  sample: [intel_iommu=on, iommu=pt]
cmdline_current:
  description: The running kernel's command line, or null when it cannot be read.
  returned: always
  type: str
cmdline_next:
  description: The arguments configured for the next boot.
  returned: always
  type: str
commands:
  description: Bootloader commands run (in check mode, that would run), as argv lists.
  returned: always
  type: list
  elements: list
commands_skipped:
  description: Bootloader commands needed but not run because O(root) is not C(/).
  returned: always
  type: list
  elements: list
files:
  description: The files the boot part changed (or would), the huge pages' sysctl file included.
  returned: always
  type: list
  elements: str
  sample: [/etc/default/grub]
reboot_required:
  description: Whether the running kernel lacks the managed arguments, or a device is not on C(vfio-pci) until a boot.
  returned: always
  type: bool
kernel_args:
  description: The O(kernel_args) part; null when it is unset.
  returned: always
  type: dict
  contains:
    args:
      description: The IOMMU and further arguments managed.
      type: list
      elements: str
    reboot_required:
      description: Whether the running kernel lacks them.
      type: bool
hugepages:
  description: The O(hugepages) part; null when it is unset.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether the running kernel's pools changed (or would); the files are in RV(files).
      type: bool
    pages:
      description: Per pool C({before, requested, after}); empty when the runtime part did not run.
      type: dict
    args:
      description: The pages' own kernel arguments (1G or per-node pages); empty with sysctl.
      type: list
      elements: str
    persistent_via:
      description: C(kernel_args), C(sysctl), or null with O(hugepages.persistent=false).
      type: str
    reboot_required:
      description: Whether the running kernel lacks the pages' arguments.
      type: bool
vfio:
  description: The O(vfio) part, keys as M(passthrough.gpu.vfio_bind) returns them; null when it is unset.
  returned: always
  type: dict
  contains:
    changed:
      description: Whether a driver, a file or the initramfs changed (or would).
      type: bool
    devices:
      description: Per function, its drivers before and after.
      type: list
      elements: dict
    reboot_required:
      description: Whether a device is on C(vfio-pci) only from the next boot.
      type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _bootloader, _hugepages, _vfio

ERRORS = (_bootloader.BootloaderError, _hugepages.HugepagesError, _vfio.VfioError)


def plan(module):
    """Every part checked and planned, nothing changed: ``(boot, huge, vfio_plan, host, run)``."""
    params = module.params
    root = params["root"]
    huge, karg, vfio = params["hugepages"], params["kernel_args"], params["vfio"]
    if not (huge or karg or vfio):
        raise _bootloader.BootloaderError("nothing to manage: set hugepages, kernel_args or vfio")
    args = []
    if karg:
        args = _bootloader.merge_iommu_args(root, karg["args"], karg["iommu"], "present")
        if not args:
            raise _bootloader.BootloaderError("nothing to manage in kernel_args: args is empty and iommu is none")
    run, query, resolve = _bootloader.module_runner(module, _argspec.root_is_live(root))
    if huge and not huge["runtime"] and not huge["persistent"]:
        raise _hugepages.HugepagesError("hugepages: runtime and persistent are both false: nothing to do; set "
                                        "runtime=true (pages now) or persistent=true (pages from boot)")
    if huge:
        huge = dict(huge, nodes=huge["nodes"] or [])
        huge["count"] = _hugepages.page_count(huge["size"], huge["count"], huge["memory"])
        _hugepages.validate(root, huge["size"], huge["count"], huge["nodes"])
    if huge and huge["persistent"]:
        boot = _hugepages.plan_persistent(root, huge["size"], huge["count"], huge["nodes"], params["bootloader"],
                                          query, other_args=args)
    elif args:
        boot = _bootloader.plan_kernel_args(root, args, "present", params["bootloader"], query)
    else:
        boot = None
    host = _vfio.Host(run_command=module.run_command, which=module.get_bin_path, mover=module.atomic_move)
    vfio_plan = None
    if vfio:
        vfio_plan = _vfio.plan(dict(vfio, root=root, state="bound", rebuild_initramfs=True,
                                    modprobe_file=_vfio.MODPROBE_FILE), host)
        _vfio.check_rebuild_tool(vfio_plan, host)
    if boot is not None:
        resolve(boot)
    return boot, huge, vfio_plan, host, run


def ensure(module):
    params = module.params
    root, check_mode = params["root"], module.check_mode
    live = _argspec.root_is_live(root)
    boot, huge, vfio_plan, host, run = plan(module)
    current = _bootloader.read_cmdline(root)
    result = {"bootloader": None, "args": [], "cmdline_current": current, "cmdline_next": "",
              "commands": [], "commands_skipped": [], "files": [], "reboot_required": False,
              "kernel_args": None, "hugepages": None, "vfio": None}
    warnings, diff, done = [], [], []
    try:
        if boot is not None:
            result.update(_bootloader.plan_result(boot, _bootloader.apply_plan(boot, run, live, check_mode)))
            result["files"] = boot.files.changed_paths
            diff.extend(boot.diff())
            if boot.changed:
                done.append("the boot configuration")
        huge_args = _huge_args(huge)
        if params["kernel_args"]:
            ours = [a for a in boot.args if a not in huge_args]
            result["kernel_args"] = {"args": ours, "reboot_required": not _bootloader.satisfied(current or "", ours, "present")}
            warnings.extend(_bootloader.isolation_warnings(ours, "present"))
        if huge:
            result["hugepages"] = _ensure_pages(huge, huge_args, current, root, live, check_mode, warnings)
            if any(p["before"] != p["after"] for p in result["hugepages"]["pages"].values()):
                done.append("the huge page pools")
        if vfio_plan is not None:
            vfio = _vfio.apply(vfio_plan, host, check_mode)
            warnings.extend(vfio.pop("warnings"))
            diff.extend(vfio.pop("diff"))
            result["vfio"] = vfio
    except ERRORS as exc:
        # The earlier parts' warnings (weakened isolation, a pool shortfall) still count.
        if done and not check_mode:
            partial = type(exc)("%s (already done in this run: %s)" % (exc, " and ".join(done)))
            partial.changed, partial.warnings = True, warnings
            raise partial
        exc.warnings = warnings
        raise
    result["reboot_required"] = bool(result["reboot_required"] or (result["vfio"] or {}).get("reboot_required"))
    result["changed"] = bool(boot is not None and boot.changed) or any(
        (result[part] or {}).get("changed") for part in ("hugepages", "vfio"))
    if module._diff:
        result["diff"] = diff
    return result, warnings


def _huge_args(huge):
    """The huge pages' own kernel arguments: 1G or per-node pages from every boot."""
    if not huge or not huge["persistent"] or not (huge["size"] == "1G" or huge["nodes"]):
        return []
    return _hugepages.kernel_args(huge["size"], huge["count"], huge["nodes"])


def _ensure_pages(huge, huge_args, current, root, live, check_mode, warnings):
    """The running kernel's pools; a shortfall fails only without a boot-time reservation.

    ``changed`` is the pools' own; the files (the sysctl file, the boot configuration) are the
    module's RV(files).
    """
    size, count, nodes = huge["size"], huge["count"], huge["nodes"]
    part = {"size": size, "count": count, "nodes": nodes, "pages": {}, "args": huge_args, "changed": False,
            "persistent_via": ("kernel_args" if huge_args else "sysctl") if huge["persistent"] else None,
            "reboot_required": not _bootloader.satisfied(current or "", huge_args, "present")}
    if huge["runtime"] and not live:
        warnings.append("runtime pages not set: root is %s, not this host's /" % root)
    elif huge["runtime"]:
        part["pages"] = _hugepages.ensure_runtime(root, size, count, nodes, check_mode)
        part["changed"] = any(p["before"] != p["requested"] for p in part["pages"].values())
        short = _hugepages.shortfall(part["pages"], size)
        if short and not huge["persistent"]:
            raise _hugepages.HugepagesError(short)
        if short:
            warnings.append(short + "; the boot-time reservation is configured: reboot to get them")
    return part


def main():
    argument_spec = dict(
        hugepages={"type": "dict", "options": _argspec.hugepages_options(),
                   "mutually_exclusive": [("count", "memory")], "required_one_of": [("count", "memory")]},
        kernel_args={"type": "dict", "options": {
            "iommu": {"type": "str", "choices": ["auto", "intel", "amd", "none"], "default": "auto"},
            "args": {"type": "list", "elements": "str", "default": []},
        }},
        vfio={"type": "dict", "options": _argspec.vfio_options()},
    )
    argument_spec.update(_argspec.bootloader_argument_spec())
    argument_spec.update(_argspec.root_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result, warnings = ensure(module)
    except ERRORS as exc:
        for warning in getattr(exc, "warnings", []):
            module.warn(warning)
        module.fail_json(msg=str(exc), changed=getattr(exc, "changed", False))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
