#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: gpu_facts
short_description: GPUs on a host, their companion functions, the MMIO they need and what stands in the way
version_added: 0.1.0
description:
  - Finds every display controller (PCI class 03) and sets the C(passthrough_gpus) fact with the same
    per-device fields as M(passthrough.gpu.iommu_facts), the companion functions of the same slot
    (HDMI audio, USB-C), the isolation verdict of the IOMMU group, and the 64-bit MMIO a VM needs.
  - "MMIO: C(esxi_64bit_mmio_size_gb) is the value for ESXi C(pciPassthru.64bitMMIOSizeGB). The
    count rule is VMware's rule of thumb (16 GB per GPU rounded up to the next power of two: 1 GPU
    gives 32). The bar rule sums the real 64-bit BARs of the GPU and its companions, adds a quarter
    for the VM's own devices and rounds up to a power of two; it is used whenever BARs are known.
    C(ovmf_x_pcimmio64mb) is the same size for OVMF's C(-fw_cfg name=opt/ovmf/X-PciMmio64Mb)."
  - Also returns a readable readiness summary per GPU in RV(summary).
  - Reads only, except that O(check_rom=true) briefly enables each GPU's ROM in sysfs to read it.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._attributes.FACTS
options:
  check_rom:
    description:
      - Read each GPU's option ROM and report whether it carries a UEFI image (PCI expansion ROM
        code type 3), which an OVMF guest needs to show a picture before its driver loads.
      - Reading a ROM writes C(1) to the device's C(rom) file and C(0) back afterwards; done only when
        O(root=/) and the module runs as root, ignored with a warning otherwise.
    type: bool
    default: false
  device_classes:
    description:
      - PCI class-code prefixes (2, 4 or 6 hex digits) of the devices to treat as GPUs.
      - The default takes display controllers (VGA C(0300), 3D C(0302), other C(0380)). Add C('12')
        for processing accelerators or C('0b40') for co-processors.
      - Quote the values in YAML; an unquoted C(03) is the number 3.
    type: list
    elements: str
    default: ['03']
notes:
  - Facts of all PCI devices and groups are in M(passthrough.gpu.iommu_facts); this module reads them
    too but returns only the GPUs.
seealso:
  - module: passthrough.gpu.iommu_facts
"""

EXAMPLES = r"""
- name: Read the GPUs and print what each needs
  passthrough.gpu.gpu_facts:
  register: gpus

- name: Show the readiness summary
  ansible.builtin.debug:
    var: gpus.summary

- name: Pick the GPUs that can be passed through now
  ansible.builtin.set_fact:
    passthrough_candidates: "{{ ansible_facts.passthrough_gpus | selectattr('ready') | map(attribute='address') | list }}"

- name: Count processing accelerators (class 12) as GPUs too
  passthrough.gpu.gpu_facts:
    device_classes: ['03', '12']

- name: Also check for a UEFI option ROM
  passthrough.gpu.gpu_facts:
    check_rom: true
  become: true
"""

RETURN = r"""
summary:
  description: Readable readiness summary, one line per item.
  returned: always
  type: list
  elements: str
  sample: ["IOMMU: on (intel)", "GPU 0000:01:00.0 [10de:2204] class 030000", "  ready: yes"]
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    passthrough_gpus:
      description:
        - The GPUs (PCI class 03, or O(device_classes)) in address order. Each has every per-device field of
          C(passthrough_iommu.devices) in M(passthrough.gpu.iommu_facts) (C(address), C(vendor_id),
          C(device_id), C(subsystem_vendor_id), C(subsystem_device_id), C(class), C(revision),
          C(driver), C(iommu_group), C(bars), C(rom_size_bytes), C(boot_vga), C(numa_node),
          C(reset_method), C(is_bridge), C(upstream_bridges), C(companions)) plus the keys below.
      returned: always
      type: list
      elements: dict
      contains:
        companion_functions:
          description: The full device records of the other functions in the GPU's slot.
          type: list
          elements: dict
          sample: [{address: "0000:01:00.1", class: "040300", driver: snd_hda_intel}]
        bar_total_64bit_prefetchable_bytes:
          description: Sum of the 64-bit prefetchable BARs of the GPU and its companions.
          type: int
          sample: 17179869184
        bars_above_4g:
          description: Whether any BAR of the GPU or its companions sits at or above 4 GiB (evidence
            that "Above 4G decoding" is on in firmware).
          type: bool
          sample: true
        mmio:
          description: 64-bit MMIO sizing for a VM that gets this GPU and its companions.
          type: dict
          contains:
            bar_total_bytes:
              description: Sum of the 64-bit BARs of the GPU and its companions.
              type: int
              sample: 17196646400
            needs_64bit_mmio:
              description: Whether the BARs need 16 GiB or more (ESXi then needs C(pciPassthru.use64bitMMIO)).
              type: bool
              sample: true
            esxi_64bit_mmio_size_gb:
              description: The size to use for C(pciPassthru.64bitMMIOSizeGB), by the rule in C(rule).
              type: int
              sample: 32
            rule:
              description: C(bars) when BAR sizes are known, else C(count).
              type: str
              sample: bars
            count_rule_gb:
              description: 16 GB per GPU rounded up to the next power of two.
              type: int
              sample: 32
            bar_rule_gb:
              description: The BAR sum plus a quarter, rounded up to a power of two (null without 64-bit BARs).
              type: int
              sample: 32
            ovmf_x_pcimmio64mb:
              description: The same size in MiB for OVMF's C(opt/ovmf/X-PciMmio64Mb).
              type: int
              sample: 32768
            ovmf_fw_cfg_needed:
              description: Whether the size exceeds OVMF's default 32 GiB aperture, so the fw_cfg is needed.
              type: bool
              sample: false
        rom:
          description: Option ROM images, when O(check_rom=true); null otherwise.
          type: dict
          contains:
            has_uefi:
              description: Whether an image has code type 3 (UEFI); null when the ROM could not be read.
              type: bool
              sample: true
            images:
              description: The images in ROM order with C(offset), C(length_bytes), C(vendor_id),
                C(device_id), C(code_type) (C(x86), C(efi), ...) and for UEFI images C(efi_machine).
              type: list
              elements: dict
              sample: [{code_type: x86, length_bytes: 65536}, {code_type: efi, efi_machine: x64}]
            error:
              description: Why the ROM could not be read.
              type: str
              returned: when the ROM could not be read
        isolated:
          description: Whether the GPU's IOMMU group holds only its own functions (and bridges).
          type: bool
          sample: true
        bound_to_vfio:
          description: Whether the GPU and all its companions are bound to vfio-pci.
          type: bool
          sample: false
        missing:
          description: What stands between this GPU and a guest; empty when ready.
          type: list
          elements: str
          sample: ["IOMMU group 1 is shared with 0000:00:1f.3 [8086:a348] class 040300: pass those through too, ..."]
        ready:
          description: Whether nothing is missing (binding to vfio-pci is a later step, not counted here).
          type: bool
          sample: true
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _gpu, _pci


def main():
    argument_spec = _argspec.root_argument_spec()
    argument_spec["check_rom"] = {"type": "bool", "default": False}
    argument_spec["device_classes"] = {"type": "list", "elements": "str", "default": ["03"]}
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    root = module.params["root"]
    check_rom = module.params["check_rom"]
    if check_rom and (not _argspec.root_is_live(root) or os.geteuid() != 0):
        module.warn("check_rom needs root=/ and root privileges; option ROMs were not read")
        check_rom = False
    try:
        iommu, gpus = _gpu.read_gpus(root, check_rom=check_rom, classes=module.params["device_classes"])
    except (_pci.PciError, _gpu.GpuError) as exc:
        module.fail_json(msg=str(exc))
    for warning in iommu["warnings"]:
        module.warn(warning)
    for gpu in gpus:
        if gpu["rom"] and gpu["rom"].get("error"):
            module.warn("%s: %s" % (gpu["address"], gpu["rom"]["error"]))
    module.exit_json(changed=False, summary=_gpu.summary_lines(iommu, gpus),
                     ansible_facts={"passthrough_gpus": gpus})


if __name__ == "__main__":
    main()
