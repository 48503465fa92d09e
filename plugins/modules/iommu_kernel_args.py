#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iommu_kernel_args
short_description: IOMMU and other kernel arguments in the bootloader's configuration
version_added: 0.1.0
description:
  - Makes kernel arguments present or absent in the boot configuration (GRUB defaults,
    C(/etc/kernel/cmdline), grubby or kernelstub), then regenerates the boot configuration.
  - A present C(key=value) replaces other values of that key (C(intel_iommu=off) becomes
    C(intel_iommu=on)) and duplicates of it go; every unrelated argument and every other byte of
    the edited file stays as it was.
  - If regenerating the boot configuration fails, the edited files are put back byte for byte and
    the module fails with the command's error output.
  - A run killed during regeneration leaves C(/var/lib/passthrough-gpu/bootloader-<bootloader>.pending)
    under O(root); while it exists the next run regenerates even though no file changes.
  - Keys match with C(-) and C(_) as one (C(vfio-pci.ids) is C(vfio_pci.ids)), as the kernel reads them;
    values may not hold quotes, white space or control characters.
  - Never reboots. RV(reboot_required) says whether the running kernel's command line differs from
    what is asked.
  - Warns when C(pcie_acs_override) or C(vfio_iommu_type1.allow_unsafe_interrupts) is added, as
    both weaken the isolation passthrough relies on.
  - All input is checked before anything is written.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._bootloader
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: One entry per edited file. grubby and kernelstub keep no file to diff; see RV(commands).
  idempotent:
    support: full
options:
  args:
    description:
      - Kernel arguments, each C(key) or C(key=value) with no white space or quotes.
      - Added to (or removed with) the IOMMU arguments O(iommu) stands for; where both name the same
        key, the one in O(args) wins.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) adds the arguments, replacing other values of their keys.
      - V(absent) removes them; C(key) removes every value of the key, C(key=value) only that value.
    type: str
    choices: [present, absent]
    default: present
  iommu:
    description:
      - IOMMU arguments to manage with O(args). V(intel) is C(intel_iommu=on iommu=pt), V(amd) is
        C(amd_iommu=on iommu=pt), V(none) is nothing.
      - V(auto) picks by the IOMMU the platform has - running units in C(/sys/class/iommu)
        (C(dmar*) Intel, C(ivhd*) AMD), else the firmware's ACPI table (C(DMAR) Intel VT-d, C(IVRS)
        AMD-Vi, in C(/sys/firmware/acpi/tables)) - and only then by C(vendor_id) in
        C(/proc/cpuinfo), since a VM's CPU vendor need not match its IOMMU.
      - C(iommu=pt) (passthrough mode for the host's own devices) is added with the IOMMU. DMA of
        devices the host keeps then skips translation, which costs nothing in isolation for devices
        given to guests and avoids IOMMU overhead and quirks on the host. Put C(iommu=nopt) or another
        value in O(args) to override it.
      - When not set, V(auto) for O(state=present) and V(none) for O(state=absent), so removing an
        argument never turns the IOMMU off unless asked.
    type: str
    choices: [auto, intel, amd, none]
notes:
  - With O(root) other than C(/) the files under O(root) are edited and the regeneration commands
    are returned in RV(commands_skipped), not run.
  - The GRUB, systemd-boot (C(/etc/kernel/cmdline)) and Proxmox file editing is unit-tested; GRUB is
    also proven on a real Debian 12 VM with update-grub and a reboot. grubby and kernelstub planning
    is unit-tested against recorded output only.
seealso:
  - module: passthrough.gpu.iommu_facts
  - module: passthrough.gpu.hugepages
"""

EXAMPLES = r"""
- name: Turn the IOMMU on (intel_iommu=on or amd_iommu=on by platform, and iommu=pt)
  passthrough.gpu.iommu_kernel_args:
  register: kargs

- name: Reboot when the running kernel does not have them yet
  ansible.builtin.reboot:
  when: kargs.reboot_required

- name: IOMMU plus early vfio-pci binding and no EFI framebuffer
  passthrough.gpu.iommu_kernel_args:
    args:
      - vfio-pci.ids=10de:2204,10de:1aef
      - video=efifb:off

- name: Remove the ACS override again
  passthrough.gpu.iommu_kernel_args:
    args: [pcie_acs_override]
    state: absent

- name: Proxmox VE on systemd-boot (/etc/kernel/cmdline, proxmox-boot-tool refresh)
  passthrough.gpu.iommu_kernel_args:
    bootloader: proxmox_boot_tool
    iommu: amd
"""

RETURN = r"""
bootloader:
  description: The bootloader used (detected when O(bootloader=auto)).
  returned: always
  type: str
  sample: grub
args:
  description: Every argument managed, the IOMMU ones included.
  returned: always
  type: list
  elements: str
  sample: [intel_iommu=on, iommu=pt]
cmdline_current:
  description: The running kernel's command line (C(/proc/cmdline) under O(root)), or null when it cannot be read.
  returned: always
  type: str
  sample: BOOT_IMAGE=/boot/vmlinuz-6.1.0-50-amd64 root=UUID=0c1b ro quiet
cmdline_next:
  description:
    - The arguments configured for the next boot after this run (in check mode, after the run would
      be done). GRUB - C(GRUB_CMDLINE_LINUX) then C(GRUB_CMDLINE_LINUX_DEFAULT); systemd-boot and
      Proxmox - C(/etc/kernel/cmdline); grubby - the first boot entry's arguments; kernelstub - its
      C(kernel_options).
  returned: always
  type: str
  sample: console=ttyS0,115200 quiet intel_iommu=on iommu=pt
reboot_required:
  description:
    - Whether the running kernel's command line lacks an argument asked present (with its value), or
      still has one asked absent. True until the host boots with the new configuration.
  returned: always
  type: bool
  sample: true
commands:
  description: Commands run (in check mode, that would run), each as an argv list, in order.
  returned: always
  type: list
  elements: list
  sample: [[update-grub]]
commands_skipped:
  description: Commands needed but not run because O(root) is not C(/); run them in that system.
  returned: always
  type: list
  elements: list
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _bootloader


def ensure_kernel_args(module):
    params = module.params
    live = _argspec.root_is_live(params["root"])
    run, query, resolve = _bootloader.module_runner(module, live)
    args = _bootloader.merge_iommu_args(params["root"], params["args"], params["iommu"], params["state"])
    if not args:
        raise _bootloader.BootloaderError("nothing to manage: args is empty and iommu is none")
    plan = _bootloader.plan_kernel_args(params["root"], args, params["state"], params["bootloader"], query)
    resolve(plan)
    applied = _bootloader.apply_plan(plan, run, live, module.check_mode)
    result = dict(_bootloader.plan_result(plan, applied), changed=plan.changed)
    if module._diff:
        result["diff"] = plan.diff()
    return result, _bootloader.isolation_warnings(args, params["state"])


def main():
    argument_spec = dict(
        args={"type": "list", "elements": "str", "default": []},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        iommu={"type": "str", "choices": ["auto", "intel", "amd", "none"]},
    )
    argument_spec.update(_argspec.bootloader_argument_spec())
    argument_spec.update(_argspec.root_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result, warnings = ensure_kernel_args(module)
    except _bootloader.BootloaderError as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
