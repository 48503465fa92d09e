#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: proxmox_hostpci
short_description: PCI passthrough entries and guest settings in a Proxmox VE VM config file
version_added: 0.1.0
description:
  - Edits C(/etc/pve/qemu-server/<vmid>.conf) (under O(root)) so the VM gets the listed host PCI
    devices as C(hostpciN) entries, and optionally C(machine), C(bios), C(hugepages), C(numa) and
    the OVMF 64-bit MMIO aperture in C(args).
  - Only the VM's current config is edited (the part before the first C([PENDING]),
    C([special:cloudinit]) or snapshot section). Every other line, including the C(#) description
    lines, the sections, unknown keys and the line endings, stays byte for byte.
  - A device already in a C(hostpciN) entry (same id, or the whole slot holding that function,
    or the same mapping) keeps its index and the options this module does not manage
    (C(romfile), C(device-id), C(mdev) ...); a new device takes the lowest free index.
  - Refuses, before writing anything, while the VM runs (a live process behind
    C(/run/qemu-server/<vmid>.pid)) unless O(allow_running=true); a config with a C(lock) (backup,
    migration, snapshot in progress); a key that appears twice; C(pcie=1) without a q35 machine.
  - Writes the file directly (atomic rename), not through C(qm) or the API; see the notes.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
options:
  vmid:
    description: The VM's id; its config must exist.
    type: int
    required: true
  devices:
    description: Host PCI devices the VM should have, one C(hostpciN) entry each.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description:
          - PCI id C(0000:01:00.0) or C(01:00.0) for one function; C(0000:01:00) or C(01:00) (no
            function) for the whole slot as one multifunction device (GPU with its audio, USB
            functions). Several ids joined with C(;) make one entry.
          - Exactly one of O(devices[].host) and O(devices[].mapping).
        type: str
      mapping:
        description: A cluster resource mapping name (Datacenter, Resource Mappings, PCI).
        type: str
      pcie:
        description: Attach as PCI Express (C(pcie=1)); needs a q35 machine (O(machine=q35)).
        type: bool
        default: true
      x_vga:
        description: Primary GPU of the guest (C(x-vga=1)). Unset leaves the entry as it is.
        type: bool
      rombar:
        description: Whether the device's ROM BAR is visible to the guest. Unset leaves the entry as it is.
        type: bool
      index:
        description: Use C(hostpci<index>); unset keeps the current index or takes the lowest free one.
        type: int
  exclusive:
    description: Remove C(hostpciN) entries not listed in O(devices).
    type: bool
    default: false
  machine:
    description:
      - Machine type, for example V(q35). V(q35) is satisfied by any q35 type already there
        (C(pc-q35-8.1), C(q35,viommu=intel)), so a pinned version is kept.
      - Checked against PVE's machine format (C(q35), C(pc-q35-<version>), C(pc-i440fx-<version>), C(pc),
        C(virt), each optionally followed by options like C(,viommu=intel)); anything else is refused.
    type: str
  bios:
    description: Firmware. V(ovmf) needs an C(efidisk0), which this module does not create (it warns when missing).
    type: str
    choices: [seabios, ovmf]
  hugepages:
    description: Back guest memory with huge pages of this size in MiB, or V(any).
    type: str
    choices: ['2', '1024', any]
  numa:
    description: Enable NUMA for the guest.
    type: bool
  mmio_mb:
    description:
      - Size in MiB of OVMF's 64-bit PCI MMIO aperture, for GPUs with large BARs; becomes
        C(-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=<mmio_mb>) in C(args). An existing value there is
        replaced; the rest of C(args) is kept. M(passthrough.gpu.vm_mmio) sizes it from real BARs.
    type: int
  allow_running:
    description:
      - Edit the config while the VM runs. The running guest keeps its hardware; the changes take
        effect at its next start (a stop and start, not a reboot inside the guest).
    type: bool
    default: false
notes:
  - On a real Proxmox VE host C(/etc/pve) is the cluster file system (pmxcfs). This module writes the
    file with a temporary file and a rename, as PVE's own tools do, but takes no PVE lock; do not run
    it while C(qm) or the web UI changes the same VM. Its tests run on plain files; see docs/proxmox.md
    for what was not tried against a live Proxmox VE.
seealso:
  - module: passthrough.gpu.vfio_bind
  - module: passthrough.gpu.vm_mmio
"""

EXAMPLES = r"""
- name: Give VM 100 the GPU with its audio function, q35 + OVMF, 1G pages, a 64 GiB MMIO aperture
  passthrough.gpu.proxmox_hostpci:
    vmid: 100
    devices:
      - host: "0000:01:00"
        x_vga: true
    machine: q35
    bios: ovmf
    hugepages: "1024"
    numa: true
    mmio_mb: 65536

- name: Exactly these two functions and nothing else, on a VM that may be running
  passthrough.gpu.proxmox_hostpci:
    vmid: 101
    devices:
      - host: "0000:41:00.0"
      - host: "0000:41:00.1"
        rombar: false
    exclusive: true
    allow_running: true
"""

RETURN = r"""
path:
  description: The config file (under O(root)).
  returned: always
  type: str
  sample: /etc/pve/qemu-server/100.conf
changes:
  description: Keys changed (or that would change), with their values before and after (null when absent).
  returned: always
  type: list
  elements: dict
  sample: [{key: hostpci0, before: null, after: "0000:01:00,pcie=1,x-vga=1"}]
hostpci:
  description: The C(hostpciN) entries of the current config after the run.
  returned: always
  type: dict
  sample: {hostpci0: "0000:01:00,pcie=1,x-vga=1"}
running:
  description: Whether the VM runs (null when that cannot be told under O(root)).
  returned: always
  type: bool
  sample: false
restart_required:
  description: Whether the VM runs with an older config than the file now holds.
  returned: always
  type: bool
  sample: false
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _files, _proxmox

OPTIONS = ("machine", "bios", "hugepages", "numa", "mmio_mb")


def _missing_devices(root, devices):
    """Ids in ``devices`` with no sysfs entry under ``root`` (only when that root has a sysfs)."""
    sysfs = os.path.join(root, "sys", "bus", "pci", "devices")
    if not os.path.isdir(sysfs):
        return []
    present = os.listdir(sysfs)
    missing = []
    for device in devices:
        for one in _proxmox.validate_devices([device])[0]["host"] or []:
            if not any(name == one or name.startswith(one + ".") for name in present):
                missing.append(one)
    return missing


def ensure_hostpci(module):
    params = module.params
    root, vmid = params["root"], params["vmid"]
    path = _proxmox.conf_path(root, vmid)
    shown = "/" + os.path.relpath(path, root)
    files = _files.FileChanges(mover=module.atomic_move)
    text = _files.read_text(path)
    if text is None:
        raise _proxmox.ProxmoxError("%s does not exist: VM %d has no config on this node (create the VM first)"
                                    % (shown, vmid))
    lock = _proxmox.VmConfig(text).get("lock")
    if lock:
        raise _proxmox.ProxmoxError("VM %d is locked (lock: %s); not editing its config until that finishes"
                                    % (vmid, lock))
    devices = [dict((k, v) for k, v in d.items() if v is not None) for d in params["devices"]]
    options = dict((name, params[name]) for name in OPTIONS)
    new_text, changes, warnings = _proxmox.plan(text, devices, options, params["exclusive"])
    running, reason = _proxmox.vm_running(root, vmid, _argspec.root_is_live(root))
    if changes and running is not False and not params["allow_running"]:
        raise _proxmox.ProxmoxError("refusing to change the config of VM %d: %s. Stop the VM, or set "
                                    "allow_running=true to have the changes at its next start" % (vmid, reason))
    if changes and running is not False:
        warnings.append("VM %d: %s; the changes take effect at its next start (stop and start)" % (vmid, reason))
    for one in _missing_devices(root, devices):
        warnings.append("PCI device %s does not exist on this host (under %s/sys)" % (one, root.rstrip("/")))
    files.want(path, new_text)
    if files.changed and not module.check_mode:
        files.apply()
    final = _proxmox.VmConfig(new_text).keys()
    result = {"changed": files.changed, "path": shown, "changes": changes, "running": running,
              "restart_required": bool(changes) and running is not False,
              "hostpci": dict((k, v) for k, v in final.items() if _proxmox.HOSTPCI_RE.match(k))}
    if module._diff:
        result["diff"] = files.diff(display_root=root)
    return result, warnings


def main():
    argument_spec = dict(
        vmid={"type": "int", "required": True},
        devices={"type": "list", "elements": "dict", "default": [], "options": dict(
            host={"type": "str"},
            mapping={"type": "str"},
            pcie={"type": "bool", "default": True},
            x_vga={"type": "bool"},
            rombar={"type": "bool"},
            index={"type": "int"},
        ), "mutually_exclusive": [("host", "mapping")], "required_one_of": [("host", "mapping")]},
        exclusive={"type": "bool", "default": False},
        machine={"type": "str"},
        bios={"type": "str", "choices": ["seabios", "ovmf"]},
        hugepages={"type": "str", "choices": ["2", "1024", "any"]},
        numa={"type": "bool"},
        mmio_mb={"type": "int"},
        allow_running={"type": "bool", "default": False},
    )
    argument_spec.update(_argspec.root_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result, warnings = ensure_hostpci(module)
    except (_proxmox.ProxmoxError, _files.FileError) as exc:
        module.fail_json(msg=str(exc))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
