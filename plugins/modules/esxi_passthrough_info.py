#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: esxi_passthrough_info
short_description: Read the PCI passthrough state, graphics configuration and vGPU profiles of an ESXi host
version_added: 0.1.0
description:
  - Lists the PCI devices of one ESXi host with their passthrough state (capable, enabled, active),
    the host graphics configuration, and the vGPU profiles VMs on the host may use. Changes nothing.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - vmware.vmware.base_options
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Reads only; the result is the same in check mode.
  diff_mode:
    support: none
    details: Nothing changes, so there is no diff.
  idempotent:
    support: full
    details: Never reports a change.
options:
  esxi_hostname:
    description:
      - The ESXi host, by its name in the inventory; may be left out on a direct login to one ESXi host.
    type: str
  devices:
    description:
      - Only these devices, named as in M(passthrough.gpu.esxi_passthrough) (PCI id, C(vendor:device),
        whole or part of a name); a name that matches nothing is an error. Left out, every PCI device
        of the host.
    type: list
    elements: str
seealso:
  - module: passthrough.gpu.esxi_passthrough
"""

EXAMPLES = r"""
- name: Read the host's passthrough state
  passthrough.gpu.esxi_passthrough_info:
    hostname: vcenter.example.com
    username: administrator@vsphere.local
    password: "{{ vcenter_password }}"
    esxi_hostname: esxi01.example.com
  register: info

- name: Show the devices that can be passed through
  ansible.builtin.debug:
    msg: "{{ info.passthrough.devices | selectattr('capable') | map(attribute='id') | list }}"

- name: Only the NVIDIA GPUs of one kind
  passthrough.gpu.esxi_passthrough_info:
    esxi_hostname: esxi01.example.com
    devices: ["10de:1eb8"]
"""

RETURN = r"""
passthrough:
  description: The host's passthrough state.
  returned: always
  type: dict
  contains:
    host:
      description: The host's name.
      type: str
      sample: esxi01.example.com
    devices:
      description: The host's PCI devices (or those named in O(devices)), in the host's order.
      type: list
      elements: dict
      contains:
        id:
          description: PCI id.
          type: str
          sample: "0000:af:00.0"
        name:
          description: Device name.
          type: str
          sample: TU104GL [Tesla T4]
        vendor_name:
          description: Vendor name.
          type: str
          sample: NVIDIA Corporation
        vendor_id:
          description: Vendor id, 4 hex digits (the API's signed 16-bit value converted).
          type: str
          sample: "10de"
        device_id:
          description: Device id, 4 hex digits.
          type: str
          sample: "1eb8"
        capable:
          description: Whether the host can pass the device through.
          type: bool
          sample: true
        enabled:
          description: Whether passthrough is configured.
          type: bool
          sample: true
        active:
          description: Whether passthrough is in effect.
          type: bool
          sample: true
        hardware_label:
          description: The device's hardware label (ESXi 7.0.2 or later), which a VM's Dynamic DirectPath
            custom label must match; null when it has none.
          type: str
          sample: t4
        graphics_type:
          description: The type a GPU runs in now, from the graphics manager's C(graphicsInfo)
            (C(basic), C(shared), C(direct), C(sharedDirect)); null for devices it does not list.
          type: str
          sample: direct
    graphics:
      description: The host graphics configuration; null when the host has no graphics manager.
      type: dict
      contains:
        default_type:
          description: Host default graphics type.
          type: str
          sample: shared
        assignment_policy:
          description: Shared passthrough assignment policy.
          type: str
          sample: performance
        device_types:
          description: Graphics types set per device, by PCI id.
          type: dict
          sample: {}
    vgpu_profiles:
      description: The vGPU profiles VMs on this host may use, from C(QueryConfigTarget(host))
        (C(sharedGpuPassthroughTypes)) of the environment browser of the host's cluster or compute resource.
      type: list
      elements: str
      sample: [grid_t4-1q, grid_t4-2q]
    reboot_required:
      description: Whether a listed device's passthrough waits for a host reboot (enabled differs from active),
        or a listed GPU runs in another shared graphics type than the configured one (ESXi applies it when
        Xorg restarts or the host reboots).
      type: bool
      sample: false
    host_reboot_required:
      description: The host's own C(summary.rebootRequired), for any reason.
      type: bool
      sample: false
    in_maintenance_mode:
      description: Whether the host is in maintenance mode.
      type: bool
      sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _esxi, _vsphere


def argument_spec():
    return _vsphere.vsphere_argument_spec(
        esxi_hostname={"type": "str"},
        devices={"type": "list", "elements": "str"},
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = _esxi.run_info(module.params, _vsphere.HostApi(module.params))
    except _vsphere.VsphereError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
