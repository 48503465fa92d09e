#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: esxi_passthrough
short_description: Mark PCI devices of an ESXi host for DirectPath I/O, set its graphics type, reboot it when needed
version_added: 0.1.0
description:
  - Enables (or disables) PCI passthrough (DirectPath I/O) for devices of one ESXi host, so that
    VMs can be given them (see M(passthrough.gpu.esxi_vm_passthrough)).
  - All device changes (and hardware labels) go to the host in one C(UpdatePassthruConfig) call; the
    host's state is read in bulk before and once after, so the number of API requests does not grow
    with the number of devices.
  - ESXi documents no all-or-nothing guarantee for that call (only the collection's simulator gives
    one). When it fails, the module reads the host back and, if part of the batch was applied anyway,
    fails with C(changed=true) naming those devices.
  - Refuses, before changing anything, a device name that matches nothing or several different
    devices, and enabling a device the host reports as not passthrough-capable.
  - Without O(apply_now), a change takes effect at the next host reboot; RV(reboot_required) says when
    one is due. The module reboots only when O(reboot=true) and a reboot is due, which it decides from
    the host's state read back after the change (ESXi ignores C(applyNow) for a device it cannot
    hot-apply).
  - C(changed) compares the host's state before and after the run (and is true after a reboot), so
    a change sent again that the host did not take (C(applyNow) ignored) is no change.
  - A failure after something was changed (a later call, maintenance mode, the reboot) fails with
    C(changed=true), and the message says what was already done.
  - Optionally sets the host graphics configuration (C(UpdateGraphicsConfig)) used for vGPU.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - vmware.vmware.base_options
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Same result shape; nothing is changed. Device states (and RV(rebooted)) are predicted,
      assuming the host honours O(apply_now).
  diff_mode:
    support: full
    details: Per device its C(enabled) and C(active) state and hardware label, and the graphics configuration.
  idempotent:
    support: full
options:
  esxi_hostname:
    description:
      - The ESXi host, by its name in the inventory (as vCenter shows it).
      - May be left out on a direct login to one ESXi host.
    type: str
  devices:
    description:
      - The PCI devices, each named in one of these ways.
      - A PCI id, C(0000:af:00.0) (or C(af:00.0) for domain 0000).
      - A C(vendor:device) id of 4 hex digits each, C(10de:1eb8); it names every device with that id.
      - A device's whole name as the host reports it (case-insensitive), C(TU104GL [Tesla T4]); it
        names every device with that name.
      - Part of a name, C(T4); refused when it is part of the names of different devices.
      - A name that matches nothing is an error, and nothing is changed.
      - At least one of O(devices), O(graphics_type) and O(assignment_policy) is required.
    type: list
    elements: str
  state:
    description:
      - V(enabled) marks the devices for passthrough, V(disabled) gives them back to the host.
    type: str
    choices: [enabled, disabled]
    default: enabled
  apply_now:
    description:
      - Ask the host to put the change in effect at once (C(applyNow)) instead of at the next reboot.
        With V(true), a device enabled earlier but not yet active is sent again.
      - ESXi cannot do this for every device; RV(devices[].active) and RV(reboot_required) tell.
    type: bool
    default: false
  hardware_label:
    description:
      - The hardware label (C(hardwareLabel), ESXi and API 7.0.2 or later) every device in O(devices) is
        to have, set in the same C(UpdatePassthruConfig) call. A VM's Dynamic DirectPath device with a
        custom label (M(passthrough.gpu.esxi_vm_passthrough) C(label)) gets only a host device with
        that hardware label; C(QueryConfigTarget) reports it as the device's C(customLabel).
      - V("") removes the label. Left out, labels are not touched.
      - The label is read back; a host that does not keep it (older ESXi) is an error.
    type: str
  graphics_type:
    description:
      - The host's default graphics type. V(sharedDirect) (esxcli's C(SharedPassthru)) is what NVIDIA
        vGPU needs; V(shared) is VMware's own shared graphics (vSGA).
      - On ESXi a new type takes effect when Xorg restarts or the host reboots. While a GPU of the host
        runs in another shared type (C(graphicsInfo)) than the configured one, RV(reboot_required) is
        true, in this run and the following ones, and O(reboot=true) reboots the host.
      - GPUs in C(basic) (no shared-graphics driver, such as the NVIDIA vGPU manager) or C(direct)
        (passed through) do not follow the graphics type and never make a reboot due.
      - Left out, the graphics configuration is not touched.
    type: str
    choices: [shared, sharedDirect]
  assignment_policy:
    description:
      - How vGPU VMs are spread over the GPUs. V(performance) spreads them, V(consolidation) fills one
        GPU first. Left out, not touched.
    type: str
    choices: [performance, consolidation]
  reboot:
    description:
      - "Reboot the host when a change made now or earlier waits for one (the passthrough of the devices
        named here, as read back after the change; or, when O(graphics_type) or O(assignment_policy) is
        given, a GPU's graphics type): enter maintenance mode (running VMs must be moved or stopped
        first, by DRS or by you), C(RebootHost_Task), wait until the host is connected again with a new
        boot time, and leave maintenance mode if this module entered it."
      - On a direct ESXi login the connection may break while the host goes down; the module then
        logs in again until the host is back, within O(reboot_timeout).
      - Never reboots when nothing waits for a reboot.
    type: bool
    default: false
  reboot_timeout:
    description:
      - Seconds for the whole reboot (maintenance mode included) before the module fails; at least 1
        (checked before anything is done).
    type: int
    default: 1800
notes:
  - A reboot also activates pending passthrough changes of other devices of the host.
  - A VM with a passthrough device loses vMotion, DRS placement, snapshots, suspend and memory
    overcommit (it needs a full memory reservation); this module changes no VM.
  - A GPU with passthrough enabled is not available for vGPU; vGPU needs passthrough disabled and
    O(graphics_type=sharedDirect).
seealso:
  - module: passthrough.gpu.esxi_passthrough_info
  - module: passthrough.gpu.esxi_vm_passthrough
"""

EXAMPLES = r"""
- name: Mark the GPUs for passthrough, rebooting the host (in maintenance mode) if needed
  passthrough.gpu.esxi_passthrough:
    hostname: vcenter.example.com
    username: administrator@vsphere.local
    password: "{{ vcenter_password }}"
    esxi_hostname: esxi01.example.com
    devices:
      - "0000:3b:00.0"
      - "10de:1eb8"   # every Tesla T4 of the host
    reboot: true
  register: passthrough

- name: Every ESXi module of this collection takes the connection from one place
  module_defaults:
    group/passthrough.gpu.vsphere:
      hostname: vcenter.example.com
      username: administrator@vsphere.local
      password: "{{ vcenter_password }}"
  block:
    - name: Enable now, where ESXi can (no reboot)
      passthrough.gpu.esxi_passthrough:
        esxi_hostname: esxi01.example.com
        devices: ["A100"]
        apply_now: true

    - name: Label the T4s for Dynamic DirectPath VMs that ask for "t4", now or by a reboot
      passthrough.gpu.esxi_passthrough:
        esxi_hostname: esxi01.example.com
        devices: ["10de:1eb8"]
        hardware_label: t4
        apply_now: true
        reboot: true

    - name: Give the T4s to vGPU instead
      passthrough.gpu.esxi_passthrough:
        esxi_hostname: esxi02.example.com
        devices: ["Tesla T4"]
        state: disabled
        graphics_type: sharedDirect
        assignment_policy: consolidation
        reboot: true
"""

RETURN = r"""
host:
  description: The host's name.
  returned: always
  type: str
  sample: esxi01.example.com
devices:
  description: The devices named in O(devices), in the host's order, after the change (predicted in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    id:
      description: PCI id.
      type: str
      sample: "0000:3b:00.0"
    name:
      description: Device name as the host reports it.
      type: str
      sample: GA100 [A100 PCIe 40GB]
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
      sample: "20f1"
    capable:
      description: Whether the host can pass the device through.
      type: bool
      sample: true
    enabled:
      description: Whether passthrough is configured for the device.
      type: bool
      sample: true
    active:
      description: Whether passthrough is in effect (it differs from RV(devices[].enabled) until a reboot).
      type: bool
      sample: false
    hardware_label:
      description: The device's hardware label (ESXi 7.0.2 or later); null when it has none.
      type: str
      sample: t4
graphics:
  description: The host graphics configuration after the change; null when the host has no graphics manager.
  returned: always
  type: dict
  contains:
    default_type:
      description: Host default graphics type (V(shared) or V(sharedDirect)).
      type: str
      sample: sharedDirect
    assignment_policy:
      description: Shared passthrough assignment policy (V(performance) or V(consolidation)).
      type: str
      sample: performance
    device_types:
      description: Graphics types set per device, by PCI id.
      type: dict
      sample: {"0000:af:00.0": sharedDirect}
reboot_required:
  description: Whether a named device's passthrough, or (when O(graphics_type) or O(assignment_policy) is given)
    a GPU's graphics type, waits for a host reboot.
  returned: always
  type: bool
  sample: true
rebooted:
  description: Whether the host was rebooted (would be, in check mode).
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _esxi, _vsphere


def argument_spec():
    return _vsphere.vsphere_argument_spec(
        esxi_hostname={"type": "str"},
        devices={"type": "list", "elements": "str"},
        state={"type": "str", "choices": ["enabled", "disabled"], "default": "enabled"},
        apply_now={"type": "bool", "default": False},
        hardware_label={"type": "str"},
        graphics_type={"type": "str", "choices": ["shared", "sharedDirect"]},
        assignment_policy={"type": "str", "choices": ["performance", "consolidation"]},
        reboot={"type": "bool", "default": False},
        reboot_timeout={"type": "int", "default": 1800},
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_one_of=[("devices", "graphics_type", "assignment_policy")],
                           required_by={"hardware_label": "devices"})
    try:
        _esxi.check_params(module.params)
        result = _esxi.run_passthrough(module.params, _vsphere.HostApi(module.params), module.check_mode)
    except _vsphere.VsphereError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed)
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
