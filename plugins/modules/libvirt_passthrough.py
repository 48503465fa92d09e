#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: libvirt_passthrough
short_description: Give an existing libvirt domain PCI hostdevs, hugepages, pinning, host CPU, OVMF and MMIO
version_added: 0.1.0
description:
  - Edits the persistent definition of an existing QEMU/KVM domain through C(virsh -c URI dumpxml --inactive)
    and C(virsh define --validate), so that it has what GPU passthrough needs. Each option left unset leaves
    its part of the domain alone; XML the module does not manage is kept as it was.
  - "PCI devices: C(<hostdev mode='subsystem' type='pci' managed='yes'>) per address (libvirt detaches the
    device to C(vfio-pci) when the domain starts and gives it back when it stops)."
  - "Memory: C(<memoryBacking><hugepages/>), optionally with one page size."
  - "Pinning: C(<cputune><vcpupin>) per vCPU from a plan (the plan is the whole pinning: pins of vCPUs it does
    not name are removed) and C(<emulatorpin>). CPU sets are compared as sets, since libvirt rewrites them
    as ranges."
  - "CPU and features: C(<cpu mode='host-passthrough'>), C(<hyperv><vendor_id state='on'>) and
    C(<kvm><hidden state='on'/>) (for older NVIDIA drivers' Code 43)."
  - "Firmware: C(<os firmware='efi'>) (libvirt picks OVMF), and the OVMF 64-bit MMIO aperture as
    QEMU's C(-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=N) in C(<qemu:commandline>) (libvirt 9.0
    refuses C(opt/ovmf/) names in C(<sysinfo type='fwcfg'>) as reserved). libvirt then marks the
    running domain tainted (custom-argv); that is expected."
  - Refuses, before changing anything, an unknown domain, a malformed PCI address or one that is not a PCI
    device on this host, vCPUs the domain does not have, host CPUs that are not online, and conflicting
    options. After a define the definition is read back and must have everything asked for.
  - A running domain keeps its old configuration until it is shut down and started again;
    RV(restart_required) says so. The module never restarts a domain.
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
    details: The domain's persistent XML before and after (both as the module writes XML, so only changes differ).
  idempotent:
    support: full
requirements:
  - virsh (libvirt-clients) on the managed host
options:
  name:
    description: Name of the existing domain.
    type: str
    required: true
    aliases: [domain]
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
  hostdevs:
    description:
      - PCI addresses like C(0000:01:00.0) (C(01:00.0) means domain C(0000)).
      - With O(hostdev_state=present) each must be a PCI device under O(root)'s C(/sys/bus/pci/devices).
    type: list
    elements: str
    default: []
  hostdev_state:
    description: Whether the O(hostdevs) are in the domain or not.
    type: str
    choices: [present, absent]
    default: present
  all_functions:
    description:
      - Expand every address of O(hostdevs) to all functions of its slot found on this host (a GPU and its
        HDMI audio, USB and UCSI functions). The IOMMU group is not checked here; see
        M(passthrough.gpu.iommu_facts).
    type: bool
    default: false
  hugepages:
    description: C(true) backs the guest memory by huge pages, C(false) removes C(<hugepages>). Unset leaves it.
    type: bool
  hugepage_size:
    description: Page size for O(hugepages=true); unset lets libvirt use the default huge page size.
    type: str
    choices: [2M, 1G]
  vcpu_pins:
    description:
      - vCPU number to host CPU set (libvirt syntax, like C(2) or C(2-3,^3) or C(4,6)).
      - The whole plan; empty leaves the pins alone.
    type: dict
    default: {}
  emulator_cpuset:
    description: Host CPUs for QEMU's emulator threads (C(<emulatorpin>)).
    type: str
  cpu_mode:
    description: C(<cpu mode=...>); a named model is removed with it, topology and features stay.
    type: str
    choices: [host-passthrough, host-model]
  hyperv_vendor_id:
    description: Hyper-V vendor id the guest sees (at most 12 characters); an empty string removes it.
    type: str
  kvm_hidden:
    description: C(true) hides the KVM signature from the guest, C(false) removes C(<hidden>).
    type: bool
  firmware:
    description:
      - C(efi) sets C(<os firmware='efi'>) so that libvirt selects OVMF. A domain whose own C(<loader>) is
        an OVMF/edk2 pflash image already counts as UEFI; another own loader is refused, and so is a domain
        without C(<features><acpi/>) (libvirt refuses UEFI without ACPI on x86).
      - Changing firmware of an installed guest can make it unbootable; set it before installing.
    type: str
    choices: [efi]
  mmio64_mb:
    description:
      - Size in MiB of OVMF's 64-bit PCI MMIO aperture (C(opt/ovmf/X-PciMmio64Mb)), for GPUs whose BARs
        do not fit the default; see M(passthrough.gpu.gpu_facts) for the size needed. C(0) removes the entry.
      - Needs a UEFI domain (O(firmware=efi) or an OVMF loader).
    type: int
notes:
  - O(root) is only used to check the PCI addresses and the online CPUs; the domain itself is reached
    through O(uri).
seealso:
  - module: passthrough.gpu.vfio_bind
  - module: passthrough.gpu.hugepages
  - name: libvirt domain XML format
    description: hostdev, memoryBacking, cputune, cpu, features, os elements and QEMU command-line passthrough.
    link: https://libvirt.org/formatdomain.html
"""

EXAMPLES = r"""
- name: GPU and its audio function, hugepages, pinning, OVMF with a 64 GiB aperture
  passthrough.gpu.libvirt_passthrough:
    name: win11
    hostdevs: ["0000:01:00.0"]
    all_functions: true
    hugepages: true
    hugepage_size: 1G
    vcpu_pins: {0: "2", 1: "3", 2: "4", 3: "5"}
    emulator_cpuset: "0-1"
    cpu_mode: host-passthrough
    hyperv_vendor_id: "0123456789ab"
    kvm_hidden: true
    firmware: efi
    mmio64_mb: 65536
  register: vm

- name: Tell the operator the guest needs a cold restart
  ansible.builtin.debug:
    msg: "{{ vm.changes }}: shut down and start win11"
  when: vm.restart_required

- name: Take the GPU back from the domain
  passthrough.gpu.libvirt_passthrough:
    name: win11
    hostdevs: ["0000:01:00.0", "0000:01:00.1"]
    hostdev_state: absent
"""

RETURN = r"""
changes:
  description: What changed (in check mode, would change) in the persistent definition.
  returned: always
  type: list
  elements: str
  sample: ["hostdev 0000:01:00.0 added", "hugepages added", "os firmware=efi"]
state:
  description: The domain's state as C(virsh domstate) says it.
  returned: always
  type: str
  sample: shut off
active:
  description: Whether the domain runs (or is paused).
  returned: always
  type: bool
  sample: false
restart_required:
  description: The domain is active and its running configuration lacks what was asked for.
  returned: always
  type: bool
  sample: false
commands:
  description: virsh commands that changed something (in check mode, would run), as argv lists.
  returned: always
  type: list
  elements: list
  sample: [[virsh, -c, "qemu:///system", define, --validate, /tmp/passthrough-gpu-domain-x.xml]]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _libvirt


def ensure(module):
    params = module.params
    plan = _libvirt.DomainPlan(
        hostdev_state=params["hostdev_state"], hugepages=params["hugepages"],
        hugepage_size=params["hugepage_size"], vcpu_pins=params["vcpu_pins"],
        emulator_cpuset=params["emulator_cpuset"], cpu_mode=params["cpu_mode"],
        hyperv_vendor_id=params["hyperv_vendor_id"], kvm_hidden=params["kvm_hidden"],
        firmware=params["firmware"], mmio64_mb=params["mmio64_mb"]).validate()
    plan.hostdevs = _libvirt.normalize_hostdevs(params["root"], params["hostdevs"], params["all_functions"],
                                                check_host=params["hostdev_state"] == "present")
    online_cpus = _libvirt.read_online_cpus(params["root"])
    # Every refusal that needs no domain comes before looking for virsh, so it is the one reported.
    _libvirt.check_pins_online(plan, online_cpus)
    virsh_bin = module.get_bin_path("virsh", required=True)

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    virsh = _libvirt.Virsh(run, params["uri"], virsh=virsh_bin)
    result = _libvirt.ensure_domain(virsh, params["name"], plan, module.check_mode,
                                    online_cpus=online_cpus, tmpdir=module.tmpdir)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff if result["changed"] else {}
    return result


def main():
    argument_spec = dict(
        name={"type": "str", "required": True, "aliases": ["domain"]},
        uri={"type": "str", "default": "qemu:///system"},
        hostdevs={"type": "list", "elements": "str", "default": []},
        hostdev_state={"type": "str", "choices": ["present", "absent"], "default": "present"},
        all_functions={"type": "bool", "default": False},
        hugepages={"type": "bool"},
        hugepage_size={"type": "str", "choices": ["2M", "1G"]},
        vcpu_pins={"type": "dict", "default": {}},
        emulator_cpuset={"type": "str"},
        cpu_mode={"type": "str", "choices": ["host-passthrough", "host-model"]},
        hyperv_vendor_id={"type": "str"},
        kvm_hidden={"type": "bool"},
        firmware={"type": "str", "choices": ["efi"]},
        mmio64_mb={"type": "int"},
    )
    argument_spec.update(_argspec.root_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = ensure(module)
    except _libvirt.LibvirtError as exc:
        module.fail_json(msg=str(exc), changed=exc.changed)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
