#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: esxi_vm_passthrough
short_description: Give a vSphere VM PCI devices by DirectPath I/O, Dynamic DirectPath I/O or an NVIDIA vGPU profile
version_added: 0.1.0
description:
  - "Adds or removes a VM's PCI passthrough devices, as the vSphere Client's Edit Settings, Add New Device,
    PCI Device does: static DirectPath I/O (a host PCI id, O(devices[].id)), Dynamic DirectPath I/O (a
    vendor and device id that any host of the cluster may provide, O(devices[].vendor_id) and
    O(devices[].device_id)), or an NVIDIA vGPU profile (O(vgpu_profile))."
  - "A static device is taken from the config target of the VM's host
    (C(EnvironmentBrowser.QueryConfigTarget)): its C(systemId), vendor id and device id are the host's,
    so the VM powers on on that host only."
  - With O(state=present) the VM's memory reservation is locked to its memory size
    (C(memoryReservationLockedToMax)) in the same reconfigure, since a VM with a passthrough device or vGPU
    does not power on otherwise (Reserve all guest memory (All locked)). O(state=absent) leaves the lock.
  - Devices are only added or removed while the VM is powered off. A running VM that already has the devices
    asked for but not the lock (its memory is reserved in full, or it would not run) gets the lock alone, in
    place, since ESXi changes C(memoryReservationLockedToMax) on a running VM.
  - "Refuses before changing anything, all problems in one message: DirectPath (static or Dynamic) and vGPU
    on one VM (also against the devices the VM already has); a static device whose passthrough is not active
    on the VM's host (the message says how to fix it with passthrough.gpu.esxi_passthrough); Dynamic
    DirectPath on a VM below virtual hardware vmx-17; a Dynamic DirectPath O(devices[].label) that no device
    offered in the VM's cluster (or standalone host) has as its hardware label (the message lists the labels
    offered for those ids); a vGPU profile the host does not offer (the message lists those it offers); a VM
    that already has another vGPU profile; a VM that is not powered off when devices are to change; a static
    device or vGPU for a VM with more memory than its host has (with all its memory reserved it could never
    power on there)."
  - Idempotent. With O(state=present) a static device already on the VM is not added again, and for Dynamic
    DirectPath the VM gets as many devices of each vendor id, device id and label as are listed. With
    O(state=absent) exactly the devices that match are removed (static by id; Dynamic by ids and label;
    vGPU by profile).
  - Warns when a static device is added that other VMs of the host also have (ESXi allows it; only one of
    them at a time runs with it), naming them and whether they run.
  - Warns when a device is added that the VM loses vMotion, DRS load balancing, snapshots, suspend and memory
    overcommit (DirectPath), or what vMotion of a vGPU VM needs.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - vmware.vmware.base_options
  - passthrough.gpu._vm
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Same result shape, predicted; no reconfigure.
  diff_mode:
    support: full
    details: The VM's passthrough devices and its reservation lock, before and after.
  idempotent:
    support: full
options:
  devices:
    description:
      - DirectPath devices, each either static (O(devices[].id)) or Dynamic (O(devices[].vendor_id) and
        O(devices[].device_id)).
      - One of O(devices) and O(vgpu_profile) is required.
    type: list
    elements: dict
    suboptions:
      id:
        description:
          - Static DirectPath I/O. The host PCI id (C(0000:3b:00.0), or C(3b:00.0)) of a device whose passthrough
            is active on the VM's host.
        type: str
      vendor_id:
        description:
          - Dynamic DirectPath I/O. The PCI vendor id in hex (C(10de)). Quote it in YAML.
          - Needs virtual hardware vmx-17 (vSphere 7.0) or later.
        type: str
      device_id:
        description:
          - Dynamic DirectPath I/O. The PCI device id in hex (C(1eb8)). Quote it in YAML, or a value such as
            C(2204) becomes a number.
        type: str
      label:
        description:
          - Dynamic DirectPath I/O. The hardware label of the devices to take (C(customLabel)). On ESXi 7.0.2
            and later it must match the hardware label the host gives the device (set on the host with
            passthrough.gpu.esxi_passthrough's C(hardware_label) option), as the cluster's config target
            (C(QueryConfigTarget), C(dynamicPassthrough[].customLabel)) reports it; a label no offered device
            of these ids has is refused. Leave it out to take any device with the ids.
        type: str
  vgpu_profile:
    description:
      - An NVIDIA vGPU profile (C(grid_t4-2q)) that the VM's host offers; a host offers profiles once its GPUs'
        graphics type is C(sharedDirect) and the NVIDIA vGPU manager is installed.
      - A VM has one vGPU profile; another profile on the VM is refused (remove it first).
    type: str
  state:
    description:
      - V(present) adds what the VM lacks; V(absent) removes the matching devices.
    type: str
    choices: [present, absent]
    default: present
notes:
  - The VM must be powered off for a device change; a VM that needs no change is fine in any power state, and a
    running VM whose only change is the reservation lock gets it without a power cycle.
  - Host side first, with passthrough.gpu.esxi_passthrough; for large BARs also passthrough.gpu.vm_mmio.
seealso:
  - module: passthrough.gpu.vm_mmio
  - module: passthrough.gpu.esxi_passthrough
"""

EXAMPLES = r"""
- name: An A100 by DirectPath I/O (its passthrough active on the VM's host)
  passthrough.gpu.esxi_vm_passthrough:
    hostname: vcenter.example.com
    username: administrator@vsphere.local
    password: "{{ vcenter_password }}"
    vm_name: cuda-01
    devices:
      - id: "0000:3b:00.0"

- name: Any T4 of the cluster, by Dynamic DirectPath I/O
  passthrough.gpu.esxi_vm_passthrough:
    vm_name: inference-01
    devices:
      - vendor_id: "10de"
        device_id: "1eb8"

- name: Only T4s that their hosts label "inference" (ESXi 7.0.2+; hardware_label of passthrough.gpu.esxi_passthrough)
  passthrough.gpu.esxi_vm_passthrough:
    vm_name: inference-02
    devices:
      - vendor_id: "10de"
        device_id: "1eb8"
        label: inference

- name: A vGPU profile
  passthrough.gpu.esxi_vm_passthrough:
    vm_name: vdi-01
    vgpu_profile: grid_t4-2q

- name: Take the vGPU away again
  passthrough.gpu.esxi_vm_passthrough:
    vm_name: vdi-01
    vgpu_profile: grid_t4-2q
    state: absent
"""

RETURN = r"""
vm:
  description: The VM's name.
  returned: always
  type: str
  sample: cuda-01
host:
  description: The VM's host.
  returned: always
  type: str
  sample: esxi-07.example.com
devices:
  description: The VM's PCI passthrough devices after the run (predicted in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    kind:
      description: V(static), V(dynamic), V(vgpu), or V(other) for a backing this module does not manage.
      type: str
      sample: static
    id:
      description: Static DirectPath, the host PCI id.
      type: str
      sample: "0000:3b:00.0"
    name:
      description: Static DirectPath, the device name.
      type: str
      sample: GA100 [A100 PCIe 40GB]
    vendor_id:
      description: 4 hex digits (Dynamic, the first allowed device).
      type: str
      sample: "10de"
    device_id:
      description: 4 hex digits (Dynamic, the first allowed device).
      type: str
      sample: "20f1"
    allowed:
      description: Dynamic DirectPath, the allowed devices as C(vendor:device).
      type: list
      elements: str
      sample: ["10de:1eb8"]
    label:
      description: Dynamic DirectPath, the label (the hardware label of the devices it takes).
      type: str
      sample: inference
    vgpu_profile:
      description: vGPU, the profile.
      type: str
      sample: grid_t4-2q
added:
  description: The devices added (that would be added in check mode), shaped as RV(devices).
  returned: always
  type: list
  elements: dict
  sample: [{kind: dynamic, vendor_id: "10de", device_id: "1eb8", allowed: ["10de:1eb8"], label: null}]
removed:
  description: The devices removed (that would be removed in check mode), shaped as RV(devices).
  returned: always
  type: list
  elements: dict
  sample: []
memory_reservation_locked_to_max:
  description: Whether all of the VM's memory is reserved after the run.
  returned: always
  type: bool
  sample: true
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _vm_passthrough, _vsphere


def argument_spec():
    return _vsphere.vm_argument_spec(
        devices={"type": "list", "elements": "dict", "options": {
            "id": {"type": "str"},
            "vendor_id": {"type": "str"},
            "device_id": {"type": "str"},
            "label": {"type": "str"},
        }, "mutually_exclusive": [("id", "vendor_id"), ("id", "device_id")],
            "required_together": [("vendor_id", "device_id")], "required_one_of": [("id", "vendor_id")]},
        vgpu_profile={"type": "str"},
        state={"type": "str", "choices": ["present", "absent"], "default": "present"},
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[_vsphere.VM_ONE_OF],
                           required_one_of=[_vsphere.VM_ONE_OF, ("devices", "vgpu_profile")])
    try:
        result = _vm_passthrough.run(module.params, module.check_mode)
    except (_vm_passthrough.VmPassthroughError, _vsphere.VsphereError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
