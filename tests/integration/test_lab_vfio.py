# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vfio_bind on the lab VM: runtime rebinding, refusals, persistence across a reboot, unbinding.

The playbook in targets/vfio_bind asserts each module result (check -> apply -> check -> apply);
these tests run it one phase at a time against one lab VM (phases depend on each other, in file
order) and check the VM itself in between: lspci -k, the driver links, /dev/vfio.

Order matters for one more reason: Debian 12's qxl (6.1) oopses in qxl_irq_handler when it is
bound again in the same boot to a device it gave up (seen on the lab: "BUG: unable to handle page
fault" in qxl_irq_handler, then a panic). So qxl is given back only after a boot in which vfio-pci
held the GPU from the start (persistent, then unbound), and the runtime unbind at the end gives
back the audio function only.

Timing: the lab image builds initramfs with MODULES=dep, so update-initramfs takes about a minute
under TCG (it took over 11 with MODULES=most). dracut has a test file of its own
(test_lab_vfio_dracut.py).
"""

from vfio_lab import AUDIO, CONF, GPU, GROUP, drivers, lspci_driver, playbook


def test_persistent_across_reboot(lab):
    playbook(lab, "persistent")
    # After the playbook's reboot, with no runtime step: vfio-pci holds both from boot.
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["vfio-pci", "vfio-pci"]
    assert lab.ssh("cat /sys/bus/pci/devices/%s/driver_override" % GPU).strip() == "(null)"
    assert lab.ssh("test -c /dev/vfio/%d && echo yes" % GROUP).strip() == "yes"
    initrd = lab.ssh("lsinitramfs /boot/initrd.img-$(uname -r)")
    assert "/vfio-pci.ko" in initrd or "/vfio_pci.ko" in initrd, "vfio-pci is in the initramfs"
    assert "etc/modprobe.d/passthrough-gpu-vfio.conf" in initrd


def test_unbound_removes_what_was_persisted(lab):
    playbook(lab, "unbound")
    # After the playbook's second reboot: host drivers, no vfio configuration left.
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["qxl", "snd_hda_intel"]
    assert lab.ssh("test -e %s && echo yes || echo no" % CONF).strip() == "no"
    assert "passthrough.gpu" not in lab.ssh("cat /etc/initramfs-tools/modules")
    assert "passthrough-gpu-vfio.conf" not in lab.ssh("lsinitramfs /boot/initrd.img-$(uname -r)")


def test_runtime_bind(lab):
    out = playbook(lab, "runtime")
    assert "PCI drivers" in out, "--diff shows the driver change"
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["vfio-pci", "vfio-pci"]
    assert lab.ssh("stat -c %%F /dev/vfio/%d" % GROUP).strip() == "character special file"


def test_refusals_change_nothing(lab):
    others = ("0000:03:01.0", "0000:03:02.0", "0000:00:01.0")
    before = drivers(lab, *others)
    playbook(lab, "refusals")
    assert drivers(lab, *others) == before
    assert "vfio-pci" not in before
    assert lab.ssh("test -e %s && echo yes || echo no" % CONF).strip() == "no"


def test_runtime_unbind_audio(lab):
    playbook(lab, "runtime_unbound")
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["vfio-pci", "snd_hda_intel"]
    assert lab.ssh("cat /sys/bus/pci/devices/%s/driver_override" % AUDIO).strip() == "(null)"
