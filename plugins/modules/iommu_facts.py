#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: iommu_facts
short_description: IOMMU state, IOMMU groups with an isolation verdict, and every PCI device
version_added: 0.1.0
description:
  - Reads C(/sys/class/iommu), C(/sys/kernel/iommu_groups), C(/sys/bus/pci/devices) and
    C(/proc/cmdline) and sets the C(passthrough_iommu) fact.
  - Also reads what the CPU, firmware and distribution offer for passthrough
    (O(ignore:ansible_facts.passthrough_iommu.platform)), so one module run gives the roles' preflight
    everything it judges.
  - Each IOMMU group gets a verdict. A group is isolated when every endpoint in it is a function
    of one device (same domain, bus and slot); PCI bridges and root ports stay with the host and do
    not count. Otherwise O(ignore:ansible_facts.passthrough_iommu.groups[].reasons) names the
    devices that share the group.
  - Warns when the IOMMU is off and when C(pcie_acs_override) is on the kernel command line
    (groups then reflect the kernel's word, not the hardware's isolation).
  - Reads only; changes nothing.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._attributes.FACTS
notes:
  - Works on any Linux host, and on a copy of a host's C(/sys) and C(/proc) given as O(root).
seealso:
  - module: passthrough.gpu.gpu_facts
"""

EXAMPLES = r"""
- name: Read IOMMU groups and PCI devices
  passthrough.gpu.iommu_facts:

- name: Fail early when the IOMMU is off
  ansible.builtin.assert:
    that: ansible_facts.passthrough_iommu.enabled
    fail_msg: Turn on VT-d / AMD-Vi in firmware and the IOMMU on the kernel command line.

- name: List groups that cannot be passed through whole
  ansible.builtin.debug:
    msg: "{{ ansible_facts.passthrough_iommu.groups | rejectattr('isolated') | map(attribute='reasons') | flatten }}"

- name: Inspect a sysfs tree copied from another machine
  passthrough.gpu.iommu_facts:
    root: /srv/triage/host42
  delegate_to: localhost
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to the host's facts.
  returned: always
  type: dict
  contains:
    passthrough_iommu:
      description: IOMMU state, groups and PCI devices.
      returned: always
      type: dict
      contains:
        enabled:
          description: Whether an IOMMU is active (IOMMU units in C(/sys/class/iommu) or groups exist).
          type: bool
          returned: always
          sample: true
        vendor:
          description: C(intel) (DMAR units), C(amd) (AMD-Vi units), another unit name, or null when off.
          type: str
          returned: always
          sample: intel
        units:
          description: Names of the IOMMU hardware units.
          type: list
          elements: str
          returned: always
          sample: [dmar0, dmar1]
        cmdline:
          description: The running kernel's command line.
          type: str
          returned: always
          sample: BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on iommu=pt
        iommu_args:
          description: IOMMU and passthrough arguments found on the command line (value null for a bare flag).
          type: dict
          returned: always
          sample: {intel_iommu: "on", iommu: pt}
        platform:
          description: What the CPU, the firmware and the distribution offer for passthrough.
          type: dict
          returned: always
          contains:
            cpu_virtualization:
              description: C(vmx) or C(svm) from the flags in C(/proc/cpuinfo), an empty string when neither is
                there (VT-x / AMD-V off in the firmware), null when C(/proc/cpuinfo) could not be read.
              type: str
              sample: vmx
            uefi:
              description: Whether the host booted through UEFI (C(/sys/firmware/efi/fw_platform_size) exists).
              type: bool
              sample: true
            firmware_iommu:
              description: C(intel) or C(amd) when the firmware's DMAR or IVRS ACPI table exists, else null
                (an IOMMU the kernel can turn on even while it is off now).
              type: str
              sample: intel
            vendor_reset_loaded:
              description: Whether the out-of-tree vendor-reset module is loaded.
              type: bool
              sample: false
            os_family:
              description: C(Debian), C(RedHat) or C(Archlinux) from C(/etc/debian_version),
                C(/etc/redhat-release) or C(/etc/arch-release); null for another distribution.
              type: str
              sample: Debian
        acs_override:
          description: Whether C(pcie_acs_override) is on the command line (weaker isolation).
          type: bool
          returned: always
          sample: false
        groups:
          description: IOMMU groups in numeric order; empty when the IOMMU is off.
          type: list
          elements: dict
          returned: always
          contains:
            id:
              description: Group number.
              type: int
              sample: 13
            devices:
              description: Addresses of the functions in the group.
              type: list
              elements: str
              sample: ["0000:01:00.0", "0000:01:00.1"]
            isolated:
              description: Whether every endpoint in the group is a function of one device.
              type: bool
              sample: true
            reasons:
              description: Why the group is not isolated; one entry per device sharing it.
              type: list
              elements: str
              sample: ["0000:05:01.0 [8086:100e] class 020000 shares group 5 with 0000:05:02.0 [8086:10d3] class 020000"]
        devices:
          description: Every PCI function, keyed by address.
          type: dict
          returned: always
          contains:
            address:
              description: Domain, bus, slot and function.
              type: str
              sample: "0000:01:00.0"
            vendor_id:
              description: Vendor id, 4 lowercase hex digits.
              type: str
              sample: 10de
            device_id:
              description: Device id, 4 lowercase hex digits.
              type: str
              sample: "2204"
            subsystem_vendor_id:
              description: Subsystem vendor id, 4 lowercase hex digits (null when absent).
              type: str
              sample: "1458"
            subsystem_device_id:
              description: Subsystem device id, 4 lowercase hex digits (null when absent).
              type: str
              sample: "403b"
            class:
              description: Class code, 6 lowercase hex digits (C(0300) VGA, C(0302) 3D controller).
              type: str
              sample: "030000"
            revision:
              description: Revision id, 2 lowercase hex digits.
              type: str
              sample: a1
            driver:
              description: Bound kernel driver, or null.
              type: str
              sample: nvidia
            iommu_group:
              description: IOMMU group number, or null when the IOMMU is off.
              type: int
              sample: 13
            bars:
              description: Non-empty BARs 0-5. A 64-bit BAR takes two slots; it is listed at the first.
              type: list
              elements: dict
              contains:
                index:
                  description: BAR number, 0-5.
                  type: int
                  sample: 1
                start:
                  description: Bus address the BAR is placed at.
                  type: int
                  sample: 206158430208
                size_bytes:
                  description: Size in bytes.
                  type: int
                  sample: 17179869184
                type:
                  description: C(mem) or C(io).
                  type: str
                  sample: mem
                is_64bit:
                  description: Whether it is a 64-bit memory BAR.
                  type: bool
                  sample: true
                prefetchable:
                  description: Whether it is prefetchable memory.
                  type: bool
                  sample: true
                above_4g:
                  description: Whether it is placed at or above 4 GiB (firmware's "Above 4G decoding" at work).
                  type: bool
                  sample: true
                assigned:
                  description: False when the kernel could not place it (flagged unset or disabled).
                  type: bool
                  sample: true
            rom_size_bytes:
              description: Size of the expansion ROM BAR, or null.
              type: int
              sample: 131072
            boot_vga:
              description: Whether this is the console GPU firmware booted with (null for non-VGA devices).
              type: bool
              sample: false
            numa_node:
              description: NUMA node the device is attached to, or null.
              type: int
              sample: 0
            reset_method:
              description: Reset methods the kernel offers (C(flr), C(bus), ...), or null on older kernels.
              type: list
              elements: str
              sample: [flr, bus]
            is_bridge:
              description: Whether it is a PCI bridge or root port (stays with the host).
              type: bool
              sample: false
            upstream_bridges:
              description: Bridges from the root complex down to the device, nearest last.
              type: list
              elements: str
              sample: ["0000:00:01.0"]
            companions:
              description: Other functions of the same device (same domain, bus and slot).
              type: list
              elements: str
              sample: ["0000:01:00.1"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _pci, _platform


def main():
    module = AnsibleModule(argument_spec=_argspec.root_argument_spec(), supports_check_mode=True)
    try:
        facts = _pci.read_iommu(module.params["root"])
        facts["platform"] = _platform.read_platform(module.params["root"])
    except _pci.PciError as exc:
        module.fail_json(msg=str(exc))
    for warning in facts.pop("warnings"):
        module.warn(warning)
    module.exit_json(changed=False, ansible_facts={"passthrough_iommu": facts})


if __name__ == "__main__":
    main()
