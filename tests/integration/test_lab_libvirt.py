# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt_passthrough against a real libvirtd (Debian 12's 9.0) in the lab VM.

libvirt, QEMU and OVMF come from the image's offline apt repository (tests/lab/README.md), installed
by the kvm_host role itself (its package step, with nothing else asked of it). The domains are type 'qemu' (no /dev/kvm in the TCG VM) with no disk.
The second test starts one with the lab's GPU and its audio function (IOMMU group 8) as managed
hostdevs: libvirt moves them to vfio-pci, QEMU opens /dev/vfio/8, and a destroy gives them back.
"""

import tempfile
import time
import xml.etree.ElementTree as ET

from helpers import LAB_INVENTORY, ansible_module, run_playbook, run_target
from vfio_lab import AUDIO, GPU, GROUP, drivers

DOMAIN = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>128</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/></features>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
"""


# Play vars, so they win over inventory/group_vars/kvm_hosts.yml (the demo's values).
PACKAGES_PLAY = """- name: kvm_host installs the hypervisor packages, nothing else
  hosts: lab
  gather_facts: false
  roles:
    - role: passthrough.gpu.kvm_host
      vars:
        kvm_host_install_packages: true
        kvm_host_gpus: []
        kvm_host_iommu: none
        kvm_host_hugepages_count: null
        kvm_host_reboot_ok: false
"""


def define(lab, name):
    with tempfile.TemporaryFile() as xml:
        xml.write(DOMAIN.format(name=name).encode())
        xml.seek(0)
        lab.ssh("cat > /tmp/{0}.xml && virsh -c qemu:///system define /tmp/{0}.xml".format(name), stdin=xml)


def dumpxml(lab, name, inactive=True):
    return ET.fromstring(lab.ssh("virsh -c qemu:///system dumpxml %s%s" % ("--inactive " if inactive else "", name)))


def test_install_offline_and_module_on_a_defined_domain(lab, tmp_path):
    started = time.monotonic()
    playbook = tmp_path / "packages.yml"
    playbook.write_text(PACKAGES_PLAY)
    proc = run_playbook(str(playbook), inventory=LAB_INVENTORY, env=lab.env, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
    recap = [line for line in proc.stdout.splitlines() if line.startswith("lab ")][-1]
    assert "changed=1 " in recap, recap  # the package task, and nothing else
    print("kvm_host's package step from the offline repository: %.0f s" % (time.monotonic() - started))
    assert "Running hypervisor: QEMU" in lab.ssh("virsh -c qemu:///system version")  # socket-activated
    define(lab, "lab-guest")
    run_target(lab, "libvirt_passthrough", tmp_path)  # on lab-guest (the target's default)

    dom = dumpxml(lab, "lab-guest")
    hostdevs = [(h.get("managed"), h.find("source/address").attrib) for h in dom.findall("devices/hostdev")]
    assert hostdevs == [("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x0"}),
                        ("yes", {"domain": "0x0000", "bus": "0x01", "slot": "0x00", "function": "0x1"})]
    page = dom.find("memoryBacking/hugepages/page")
    assert (page.get("size"), page.get("unit")) == ("2048", "KiB")
    assert [(p.get("vcpu"), p.get("cpuset")) for p in dom.findall("cputune/vcpupin")] == [("0", "0"), ("1", "1")]
    assert dom.find("cputune/emulatorpin").get("cpuset") == "0-1"
    assert dom.find("cpu").get("mode") == "host-passthrough"
    assert dom.find("features/hyperv/vendor_id").attrib == {"state": "on", "value": "passthrough"}
    assert dom.find("features/kvm/hidden").get("state") == "on"
    assert dom.find("os").get("firmware") == "efi"
    qemu_args = [a.get("value") for a in dom.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    assert qemu_args == ["-fw_cfg", "name=opt/ovmf/X-PciMmio64Mb,string=65536"]


def test_start_with_the_gpu_then_destroy_gives_it_back(lab):
    """Stretch: managed hostdevs really go to vfio-pci for QEMU, and come back after destroy."""
    assert drivers(lab, GPU, AUDIO) == ["qxl", "snd_hda_intel"]
    lab.ssh("echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
    define(lab, "lab-gpu")
    # No host-passthrough CPU here: QEMU's '-cpu host' needs KVM, and this VM has TCG only.
    args = {"name": "lab-gpu", "hostdevs": [GPU], "all_functions": True, "hugepages": True,
            "firmware": "efi", "mmio64_mb": 65536}
    result = ansible_module("lab", "passthrough.gpu.libvirt_passthrough", args, inventory=lab.inventory,
                            env=lab.env)
    assert result["changed"] is True
    started = time.monotonic()
    lab.ssh("virsh -c qemu:///system start lab-gpu", timeout=600)
    print("virsh start with the GPU: %.0f s" % (time.monotonic() - started))
    try:
        assert drivers(lab, GPU, AUDIO) == ["vfio-pci", "vfio-pci"]
        pid = lab.ssh("cat /run/libvirt/qemu/lab-gpu.pid").strip()
        assert "/dev/vfio/%d" % GROUP in lab.ssh("ls -l /proc/%s/fd" % pid)
        cmdline = lab.ssh("tr '\\0' ' ' < /proc/%s/cmdline" % pid)
        # QEMU 7.2 gets -device as JSON from libvirt 9.0.
        assert '"driver":"vfio-pci","host":"0000:01:00.0"' in cmdline
        assert '"driver":"vfio-pci","host":"0000:01:00.1"' in cmdline
        assert "-fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536" in cmdline
        assert '"mem-path":"/dev/hugepages/' in cmdline
        live = dumpxml(lab, "lab-gpu", inactive=False)
        assert len(live.findall("devices/hostdev")) == 2
        # Running: a further change is for the next start only.
        again = ansible_module("lab", "passthrough.gpu.libvirt_passthrough", {"name": "lab-gpu", "kvm_hidden": True},
                               inventory=lab.inventory, env=lab.env)
        assert again["changed"] is True and again["restart_required"] is True and again["state"] == "running"
        # Given back, qxl's interrupt handler oopses on the device QEMU used (measured: "BUG: unable to
        # handle page fault" in qxl_irq_handler, then a panic): unload qxl, so the GPU comes back driverless.
        lab.ssh("modprobe -r qxl")
    finally:
        lab.ssh("virsh -c qemu:///system destroy lab-gpu", timeout=300)
    assert drivers(lab, GPU, AUDIO) == ["none", "snd_hda_intel"]
    assert lab.ssh("ls /dev/vfio").split() == ["vfio"]
