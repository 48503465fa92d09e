# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule scenario proxmox_host: roles/proxmox_host on the systemd-boot lab VM given Proxmox VE's
paths and a stand-in proxmox-boot-tool (extensions/molecule/proxmox_host)."""

from molecule_run import molecule_test


def test_molecule_proxmox_host():
    molecule_test("proxmox_host")
