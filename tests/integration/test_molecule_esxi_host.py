# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule scenario esxi_host: roles/esxi_host on the GPU vSphere simulator (extensions/molecule/esxi_host)."""

from molecule_run import molecule_test


def test_molecule_esxi_host():
    molecule_test("esxi_host")
