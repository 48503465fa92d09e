# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vfio_bind persistent and unbound on a lab VM whose initramfs is built by dracut.

The lab image carries Debian's dracut .debs (installing dracut removes initramfs-tools, so the
image keeps the default); this VM installs them offline first. The dracut.conf.d settings below
are the lab's, for speed under TCG, not the module's: hostonly (this VM's drivers only) and no
compression. Measured: install + first build 88 s, `dracut --regenerate-all --force` 105 s.
"""

from vfio_lab import AUDIO, CONF, GPU, GROUP, lspci_driver, playbook

DRACUT_CONF = "/etc/dracut.conf.d/passthrough-gpu-vfio.conf"
LAB_DRACUT = 'hostonly="yes"\\nhostonly_cmdline="no"\\ncompress="cat"\\nearly_microcode="no"\\n'


def lsinitrd(lab):
    return lab.ssh("lsinitrd /boot/initrd.img-$(uname -r)", timeout=600)


def test_dracut_replaces_initramfs_tools(lab):
    lab.ssh("mkdir -p /etc/dracut.conf.d && printf '%s' > /etc/dracut.conf.d/10-lab.conf" % LAB_DRACUT)
    lab.ssh("cd /var/cache/lab-debs/dracut && DEBIAN_FRONTEND=noninteractive "
            "apt-get install -q -y --no-install-recommends ./*.deb", timeout=1200)
    assert lab.ssh("command -v dracut; command -v update-initramfs || echo none").split() == \
        ["/usr/bin/dracut", "none"]
    assert "vfio" not in lsinitrd(lab)


def test_persistent_across_reboot(lab):
    playbook(lab, "persistent", vfio_initramfs="dracut")
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["vfio-pci", "vfio-pci"]
    assert lab.ssh("test -c /dev/vfio/%d && echo yes" % GROUP).strip() == "yes"
    conf = lab.ssh("cat %s" % DRACUT_CONF)
    assert "force_drivers+=" in conf and "vfio-pci" in conf.replace("vfio_pci", "vfio-pci")
    initrd = lsinitrd(lab)
    assert "/vfio-pci.ko" in initrd or "/vfio_pci.ko" in initrd, "vfio-pci is in the initramfs"
    assert "etc/modprobe.d/passthrough-gpu-vfio.conf" in initrd


def test_unbound_removes_what_was_persisted(lab):
    playbook(lab, "unbound", vfio_initramfs="dracut")
    assert [lspci_driver(lab, a) for a in (GPU, AUDIO)] == ["qxl", "snd_hda_intel"]
    assert lab.ssh("ls %s %s 2>/dev/null || echo none" % (CONF, DRACUT_CONF)).strip() == "none"
    initrd = lsinitrd(lab)
    assert "passthrough-gpu-vfio.conf" not in initrd
    assert "/vfio-pci.ko" not in initrd and "/vfio_pci.ko" not in initrd
