#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vfio_bind
short_description: Hand PCI devices (a GPU and its companion functions) to vfio-pci, now and from boot
version_added: 0.1.0
description:
  - Binds PCI functions to C(vfio-pci) so a VM can be given them, or gives them back to their host
    driver with O(state=unbound).
  - Refuses before touching anything when a device is unknown, is a PCI bridge, sits in an IOMMU
    group shared with other devices (unless O(allow_shared_group=true)), is the console GPU
    (C(boot_vga) 1, unless O(force=true)), or when the IOMMU is off.
  - "Runtime (O(runtime=true)): per function, driverctl's way: C(vfio-pci) into C(driver_override),
    unbind from the current driver, the address into C(/sys/bus/pci/drivers_probe), then the
    C(driver) link is read back. C(modprobe vfio-pci) first when the driver is not loaded. If a
    function does not end up on C(vfio-pci), every function touched goes back to its previous
    driver and the module fails. C(new_id) is never used: it would take every device with that ID.
    Afterwards C(/dev/vfio/<group>) must exist."
  - "Persistent (O(persistent=true)): one modprobe.d file owned by this module
    (O(modprobe_file)) with C(options vfio-pci ids=...) for all the functions it holds, C(disable_vga=1)
    when one of them is a VGA-class (0300) device, C(softdep <host module> pre: vfio-pci) for each
    host module seen, and C(blacklist) lines only for the names in O(blacklist). The file keeps one
    comment line per device as its record, so several runs for different GPUs add up and
    O(state=unbound) takes out only its devices."
  - "Initramfs: vfio-pci must be in it to win against the GPU driver at boot. initramfs-tools gets a
    marked block in C(/etc/initramfs-tools/modules) (then C(update-initramfs -u -k all)); dracut
    gets C(/etc/dracut.conf.d/passthrough-gpu-vfio.conf) with C(force_drivers+=) (then
    C(dracut --regenerate-all --force)); mkinitcpio gets the modules at the front of the one-line
    C(MODULES=(...)) of C(/etc/mkinitcpio.conf) (then C(mkinitcpio -P)). C(vfio_virqfd) is listed
    only when a kernel under C(/lib/modules) is older than 6.2, where it was merged into C(vfio).
    The rebuild runs only when a file changed; if it fails, every file is put back byte for byte."
  - "A run killed during the rebuild (after the files were written) leaves the marker
    C(/var/lib/passthrough-gpu/vfio_bind-initramfs.pending), written before the files and removed
    once the rebuild succeeded; while it exists the next run rebuilds (and says so in a warning)
    even though no file changes."
  - O(state=unbound) gives the functions back to their host driver (its name in C(driver_override)
    for the probe, so a vfio-pci loaded with C(ids=) cannot take them again, then cleared) and removes
    what was persisted for them; the files and the initramfs block go when no device is left.
author:
  - passthrough.gpu maintainers (@passthrough-gpu)
extends_documentation_fragment:
  - passthrough.gpu._root
  - passthrough.gpu._attributes
attributes:
  check_mode:
    support: full
    details: Same result shape; no file, no sysfs write and no command. RV(devices[].driver_after) is predicted.
  diff_mode:
    support: full
    details: One entry per file, plus a C(PCI drivers) entry when drivers change at runtime.
  idempotent:
    support: full
options:
  devices:
    description:
      - PCI addresses (C(0000:01:00.0) or C(01:00.0)) or C(vendor:device) ids (C(10de:2204)); an id
        names every device that has it, and an id that matches nothing is an error.
    type: list
    elements: str
    required: true
  include_group:
    description:
      - Also take the other endpoint functions of each device's IOMMU group (the HDMI audio of a GPU).
        Bridges in the group stay with the host.
      - A group can only be given to a guest whole; with V(false) the module warns when the rest
        of the group stays with the host.
    type: bool
    default: true
  allow_shared_group:
    description:
      - Go on (with a warning) when a device's IOMMU group holds other devices than its own
        functions. With O(include_group=true) those devices leave the host too.
    type: bool
    default: false
  force:
    description:
      - Take the console GPU (C(boot_vga) 1) anyway, and persist C(ids=) that also match devices not
        selected. The host loses its display / those devices at boot.
    type: bool
    default: false
  runtime:
    description:
      - Rebind on the running kernel now. Only when O(root=/); otherwise the module says, in
        RV(not_done) and a warning, what it did not do.
    type: bool
    default: true
  persistent:
    description:
      - Write the modprobe.d file and the initramfs configuration so vfio-pci holds the devices
        from boot.
    type: bool
    default: true
  state:
    description:
      - V(bound) puts the functions on vfio-pci; V(unbound) gives them back and removes what was persisted.
    type: str
    choices: [bound, unbound]
    default: bound
  blacklist:
    description:
      - Host modules to blacklist in the modprobe.d file (for example C(nouveau)); only on request,
        since a blacklist also stops the module for every other device. With O(state=unbound) these
        names are taken out of the file.
    type: list
    elements: str
    default: []
  initramfs:
    description:
      - The initramfs generator to configure. V(auto) looks for dracut, then mkinitcpio, then
        initramfs-tools under O(root). V(none) leaves the initramfs alone (vfio-pci then relies on
        the softdep lines when the host driver loads from the root file system).
    type: str
    choices: [auto, initramfs-tools, dracut, mkinitcpio, none]
    default: auto
  rebuild_initramfs:
    description:
      - Rebuild the initramfs when a file changed. With V(false) the files are written and
        RV(initramfs_rebuild_required) says a rebuild is due.
    type: bool
    default: true
  modprobe_file:
    description:
      - The modprobe.d file this module owns, taken under O(root).
      - Must be a C(.conf) file in a modprobe.d directory; an existing file there that this module did not
        write (no header line of its own) is refused.
    type: path
    default: /etc/modprobe.d/passthrough-gpu-vfio.conf
notes:
  - "The C(ids=) option takes every device with those ids at boot; the module refuses when a device it was
    not asked for has one of them (the lab's console VGA and second VGA share C(1234:1111)) unless
    O(force=true). Use O(persistent=false) for such devices."
  - Persistent settings take effect at the next boot; RV(reboot_required) says when the running
    drivers differ from what the files ask for.
seealso:
  - module: passthrough.gpu.iommu_facts
  - module: passthrough.gpu.gpu_facts
"""

EXAMPLES = r"""
- name: Put the GPU and its HDMI audio on vfio-pci now and from boot
  passthrough.gpu.vfio_bind:
    devices: ['0000:01:00.0']
  register: vfio

- name: Reboot when the running drivers are not yet what the files ask for
  ansible.builtin.reboot:
  when: vfio.reboot_required

- name: Every card with this id, from the next boot on, blacklisting nouveau
  passthrough.gpu.vfio_bind:
    devices: ['10de:2204']
    runtime: false
    blacklist: [nouveau]

- name: Write the files only; the initramfs is rebuilt later by another task
  passthrough.gpu.vfio_bind:
    devices: ['01:00.0']
    rebuild_initramfs: false
  register: vfio_files

- name: Rebuild the initramfs when vfio_bind said it is due
  ansible.builtin.command: update-initramfs -u -k all
  when: vfio_files.initramfs_rebuild_required
  changed_when: true

- name: Give the GPU back to its host driver and remove the vfio-pci configuration
  passthrough.gpu.vfio_bind:
    devices: ['0000:01:00.0']
    state: unbound
"""

RETURN = r"""
devices:
  description: Each function acted on (the ones named plus, with O(include_group), their group), by address.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:01:00.0"
    id:
      description: C(vendor:device).
      type: str
      sample: "10de:2204"
    vendor_id:
      description: Vendor id, 4 hex digits.
      type: str
      sample: "10de"
    device_id:
      description: Device id, 4 hex digits.
      type: str
      sample: "2204"
    class:
      description: PCI class code, 6 hex digits.
      type: str
      sample: "030000"
    group:
      description: IOMMU group (null when the IOMMU is off).
      type: int
      sample: 8
    driver_before:
      description: The driver before this run (null when none).
      type: str
      sample: nouveau
    driver_after:
      description: The driver after this run; predicted in check mode; unchanged when the runtime step was not done.
      type: str
      sample: vfio-pci
    host_module:
      description: The host's own module for the device (from its driver, the module's record, or
        C(modules.alias)); used for C(softdep) and to give the device back. Null when unknown.
      type: str
      sample: nouveau
commands:
  description: Commands run, or that would run in check mode (C(ran) false), with their return code.
  returned: always
  type: list
  elements: dict
  sample: [{argv: [modprobe, vfio-pci], ran: true, rc: 0}, {argv: [update-initramfs, -u, -k, all], ran: true, rc: 0}]
sysfs_writes:
  description: The sysfs writes done (or that would be done in check mode), in order, as C(path) and C(value).
  returned: always
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:01:00.0/driver_override, value: vfio-pci}]
files:
  description: The files changed (or that would change), under O(root).
  returned: always
  type: list
  elements: str
  sample: [/etc/modprobe.d/passthrough-gpu-vfio.conf, /etc/initramfs-tools/modules]
initramfs:
  description: The initramfs generator used (V(initramfs-tools), V(dracut), V(mkinitcpio), V(none)); null when O(persistent=false).
  returned: always
  type: str
  sample: initramfs-tools
initramfs_rebuild_required:
  description: Files changed and the initramfs was not rebuilt (O(rebuild_initramfs=false), or O(root) is not C(/)).
  returned: always
  type: bool
  sample: false
reboot_required:
  description: With O(persistent=true), whether a function's running driver differs from what the
    files ask for (for example after O(runtime=false)), so a reboot is needed for it to take effect.
  returned: always
  type: bool
  sample: false
not_done:
  description: What was not done and why (runtime steps and commands when O(root) is not C(/)).
  returned: always
  type: list
  elements: str
  sample: ["runtime binding: root is /mnt/host, not /, so the running kernel was not touched"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _vfio


def argument_spec():
    spec = _argspec.root_argument_spec()
    spec.update(_argspec.vfio_options())
    spec.update(
        state={"type": "str", "choices": ["bound", "unbound"], "default": "bound"},
        rebuild_initramfs={"type": "bool", "default": True},
        modprobe_file={"type": "path", "default": _vfio.MODPROBE_FILE},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    host = _vfio.Host(run_command=module.run_command, which=module.get_bin_path, mover=module.atomic_move)
    try:
        result = _vfio.run(module.params, host, module.check_mode)
    except _vfio.VfioError as exc:
        module.fail_json(msg=str(exc))
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
