#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vm_mmio
short_description: Size and set the 64-bit MMIO window a vSphere VM needs for large GPU BARs
version_added: 0.1.0
description:
  - "Sets, in one C(ReconfigVM_Task), what a vSphere VM needs before a GPU with large BARs is passed to it,
    as the vSphere Client does under Edit Settings: EFI firmware (VM Options, Boot Options), all guest
    memory reserved with C(memoryReservationLockedToMax) (Memory, Reservation, Reserve all guest memory
    (All locked)), and the configuration parameters C(pciPassthru.use64bitMMIO=TRUE) and
    C(pciPassthru.64bitMMIOSizeGB=N) (VM Options, Advanced, Configuration Parameters)."
  - "N comes from one of three rules (O(rule)). V(count): VMware's rule of thumb, 16 GB per GPU rounded up to
    the next power of two (1 GPU: 32, 2 GPUs: 64). V(bars): the real 64-bit BAR sizes of every function
    passed through, plus a quarter for headroom, rounded up to a power of two; better than V(count) for
    cards whose BAR1 alone is 32 GB or more (an A100 40GB has a 64 GiB BAR1, for which V(count) gives
    too little). V(fixed): O(size_gb) as given."
  - The result also gives the OVMF equivalent for KVM guests, C(-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=M)
    with M the same size in MiB.
  - The VM is only changed while powered off. A powered-on VM that needs a change is refused (nothing is
    changed) unless O(power_cycle=true); a powered-on VM that already has every setting is left alone.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - vmware.vmware.base_options
  - passthrough.gpu._vm
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Same result shape; no shutdown, no reconfigure. RV(power_cycled) says whether it would power-cycle.
  diff_mode:
    support: full
    details: Before and after of the firmware, the reservation lock and the two extraConfig keys.
  idempotent:
    support: full
options:
  rule:
    description:
      - How to size C(pciPassthru.64bitMMIOSizeGB).
      - V(count) needs O(gpu_count); V(bars) needs O(bar_sizes); V(fixed) needs O(size_gb).
      - When not given, V(bars) if O(bar_sizes) is given, else V(fixed) if O(size_gb) is given, else V(count).
      - Whatever the rule, the result reports the value of each rule whose input is given, and warns when the
        size used is below what O(bar_sizes) needs by the V(bars) rule (headroom included).
      - A size smaller than the sum of O(bar_sizes) is refused before anything is changed, whatever the rule,
        since the BARs cannot all be placed and ESXi would refuse to power the VM on.
    type: str
    choices: [count, bars, fixed]
  gpu_count:
    description:
      - Number of GPUs passed to the VM, for the V(count) rule.
    type: int
  bar_sizes:
    description:
      - The 64-bit BARs of every PCI function passed to the VM (all GPUs and their companion functions), for
        the V(bars) rule. 32-bit BARs fit below 4 GiB and do not count.
      - Each is a byte count (an integer, digits, or C(0x) hex) or a number with a binary unit
        (C(64G), C(64GB), C(64GiB) all mean 64 x 2^30 bytes; also C(K), C(M), C(T)).
      - Each must be a power of two, as every BAR is. vSphere does not report BAR sizes; take them from the
        card's documentation or from Linux C(lspci -vv) (passthrough.gpu.gpu_facts on a Linux host).
    type: list
    elements: raw
  size_gb:
    description:
      - The size in GB for the V(fixed) rule (at least 1; a power of two is expected).
    type: int
  firmware:
    description:
      - V(efi) switches the VM to EFI firmware, which 64-bit MMIO for large BARs needs. A guest installed
        for BIOS boot will not boot after the switch (the module warns); convert its disk first.
      - V(keep) leaves the firmware as it is (and warns when it is not EFI).
    type: str
    choices: [efi, keep]
    default: efi
  reserve_memory:
    description:
      - V(true) sets C(memoryReservationLockedToMax), the reservation of all guest memory that a VM with
        a passthrough device needs to power on.
      - V(false) leaves the lock as it is (never unlocks it).
    type: bool
    default: true
  power_cycle:
    description:
      - What to do with a powered-on VM that needs a change.
      - V(false) refuses, changing nothing.
      - V(true) asks the guest to shut down (C(ShutdownGuest), which needs VMware Tools running in it), waits up
        to O(shutdown_timeout) seconds for the VM to be powered off, reconfigures it and powers it on again.
        It never powers the VM off hard; when the guest does not shut down in time the module fails without
        reconfiguring. When reconfiguring fails, the VM is powered on again unchanged.
    type: bool
    default: false
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to shut down with O(power_cycle=true); at least 1 (checked before
        anything is done).
    type: int
    default: 300
notes:
  - A suspended VM is refused; resume it and shut it down first.
  - Passthrough VMs lose vMotion, DRS load balancing, snapshots, suspend and memory overcommit; see
    passthrough.gpu.esxi_vm_passthrough.
seealso:
  - module: passthrough.gpu.esxi_vm_passthrough
  - module: passthrough.gpu.gpu_facts
"""

EXAMPLES = r"""
- name: Two GPUs, sized by VMware's rule of thumb (64 GB), shutting the guest down if it runs
  passthrough.gpu.vm_mmio:
    hostname: vcenter.example.com
    username: administrator@vsphere.local
    password: "{{ vcenter_password }}"
    vm_name: cuda-01
    gpu_count: 2
    power_cycle: true

- name: One A100 40GB sized by its BARs (BAR1 64 GiB, BAR3 32 MiB) -> 128 GB
  passthrough.gpu.vm_mmio:
    vm_name: cuda-02
    bar_sizes: [64G, 32M]
  register: mmio

- name: The same window for a KVM guest under OVMF
  ansible.builtin.debug:
    msg: "qemu ... {{ mmio.ovmf_fw_cfg }}"

- name: A fixed size, keeping the VM's firmware
  passthrough.gpu.vm_mmio:
    vm_uuid: 4215c1a2-7e0e-4f0a-9c3e-0d2b6f1e8a11
    size_gb: 256
    firmware: keep
"""

RETURN = r"""
size_gb:
  description: The C(pciPassthru.64bitMMIOSizeGB) value set (or that would be set).
  returned: always
  type: int
  sample: 128
rule:
  description: The rule that gave RV(size_gb).
  returned: always
  type: str
  sample: bars
count_rule_gb:
  description: The size by the V(count) rule; null without O(gpu_count).
  returned: always
  type: int
  sample: 32
bar_rule_gb:
  description: The size by the V(bars) rule; null without O(bar_sizes).
  returned: always
  type: int
  sample: 128
gpu_count:
  description: O(gpu_count) as given (null when not).
  returned: always
  type: int
  sample: 1
bar_total_bytes:
  description: The sum of O(bar_sizes) in bytes; null without them.
  returned: always
  type: int
  sample: 68753031168
needs_64bit_mmio:
  description: Whether the BARs reach the 16 GB from which VMware requires 64-bit MMIO; null without O(bar_sizes).
  returned: always
  type: bool
  sample: true
ovmf_x_pcimmio64mb:
  description: The same window in MiB, for OVMF's C(opt/ovmf/X-PciMmio64Mb).
  returned: always
  type: int
  sample: 131072
ovmf_fw_cfg:
  description: The QEMU argument that gives an OVMF guest this window.
  returned: always
  type: str
  sample: "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=131072"
settings:
  description: The four settings as they are after the run (as they would be, in check mode).
  returned: always
  type: dict
  sample: {firmware: efi, memory_reservation_locked_to_max: true, pciPassthru.use64bitMMIO: "TRUE",
           pciPassthru.64bitMMIOSizeGB: "128"}
changes:
  description: Each setting changed (or that would change), with its value before and after.
  returned: always
  type: list
  elements: dict
  sample: [{setting: firmware, before: bios, after: efi}, {setting: pciPassthru.64bitMMIOSizeGB, before: null, after: "128"}]
power_cycled:
  description: Whether the guest was shut down and powered on again around the change (would be, in check mode).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _vm_mmio, _vsphere


def argument_spec():
    return _vsphere.vm_argument_spec(
        rule={"type": "str", "choices": list(_vm_mmio.RULES)},
        gpu_count={"type": "int"},
        bar_sizes={"type": "list", "elements": "raw"},
        size_gb={"type": "int"},
        firmware={"type": "str", "choices": ["efi", "keep"], "default": "efi"},
        reserve_memory={"type": "bool", "default": True},
        power_cycle={"type": "bool", "default": False},
        shutdown_timeout={"type": "int", "default": 300},
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[_vsphere.VM_ONE_OF], required_one_of=[_vsphere.VM_ONE_OF])
    try:
        result = _vm_mmio.run(module.params, module.check_mode)
    except (_vm_mmio.VmMmioError, _vsphere.VsphereError) as exc:
        module.fail_json(msg=str(exc), changed=getattr(exc, "changed", False))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
