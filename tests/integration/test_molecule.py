# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""molecule scenario kvm_host: roles/kvm_host on the lab VM (extensions/molecule/kvm_host)."""

from molecule_run import molecule_test


def test_molecule_kvm_host():
    molecule_test("kvm_host")
