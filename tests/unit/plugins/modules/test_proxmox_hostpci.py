# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import pytest

from ansible_collections.passthrough.gpu.plugins.modules import proxmox_hostpci

CONF = "#GPU VM\nboot: order=scsi0\ncores: 4\nmemory: 8192\nname: gpu\nscsi0: local-lvm:vm-100-disk-0,size=32G\n" \
       "\n[PENDING]\ncores: 6\n"
CONF_PATH = "etc/pve/qemu-server/100.conf"
ARGS = {"vmid": 100, "devices": [{"host": "0000:01:00", "x_vga": True}], "machine": "q35", "bios": "ovmf",
        "hugepages": "2", "numa": True, "mmio_mb": 65536}


@pytest.fixture
def host(tree):
    tree.write(CONF_PATH, CONF)
    tree.write("proc/1/cmdline", "/sbin/init\0")
    tree.device("0000:01:00.0")
    return tree


def test_check_apply_check_apply(host, run_module):
    args = dict(ARGS, root=host.root, _ansible_diff=True)
    before = host.snapshot()
    code, result = run_module(proxmox_hostpci, dict(args, _ansible_check_mode=True))
    assert code == 0 and result["changed"] is True, result
    assert host.snapshot() == before  # check mode writes nothing
    assert result["diff"][0]["after_header"] == "/" + CONF_PATH and result["diff"][0]["before"] == CONF
    assert result["hostpci"] == {"hostpci0": "0000:01:00,pcie=1,x-vga=1"}
    assert any("no efidisk0" in w for w in result["warnings"])
    code, applied = run_module(proxmox_hostpci, args)
    assert code == 0 and applied["changed"] is True and applied["running"] is False
    text = open(host.path(CONF_PATH)).read()
    assert text == result["diff"][0]["after"]
    assert text.startswith("#GPU VM\nboot: order=scsi0\n") and text.endswith("\n\n[PENDING]\ncores: 6\n")
    assert "args: -fw_cfg name=opt/ovmf/X-PciMmio64Mb,string=65536\n" in text
    for mode in (True, False):
        code, again = run_module(proxmox_hostpci, dict(args, _ansible_check_mode=mode))
        assert code == 0 and again["changed"] is False and again["diff"] == [] and again["changes"] == []


def test_refuses_running_vm(host, run_module):
    host.write("run/qemu-server/100.pid", "777\n")
    host.write("proc/777/cmdline", "/usr/bin/kvm\0-pidfile\0/var/run/qemu-server/100.pid\0")
    before = host.snapshot()
    code, result = run_module(proxmox_hostpci, dict(ARGS, root=host.root))
    assert code == 1 and "refusing to change the config of VM 100: VM 100 runs as pid 777" in result["msg"]
    assert host.snapshot() == before
    code, result = run_module(proxmox_hostpci, dict(ARGS, root=host.root, allow_running=True))
    assert code == 0 and result["changed"] and result["running"] and result["restart_required"]
    assert any("take effect at its next start" in w for w in result["warnings"])


def test_running_vm_with_nothing_to_change_is_fine(host, run_module):
    run_module(proxmox_hostpci, dict(ARGS, root=host.root))
    host.write("run/qemu-server/100.pid", "777\n")
    host.write("proc/777/cmdline", "/usr/bin/kvm\0-pidfile\0/var/run/qemu-server/100.pid\0")
    code, result = run_module(proxmox_hostpci, dict(ARGS, root=host.root))
    assert code == 0 and result["changed"] is False and result["running"] is True


@pytest.mark.parametrize("setup, args, message", [
    ({}, {"vmid": 101}, "/etc/pve/qemu-server/101.conf does not exist"),
    ({CONF_PATH: "lock: backup\ncores: 1\n"}, {}, "VM 100 is locked (lock: backup)"),
    ({}, {"devices": [{"host": "01:00.0", "mapping": "a"}]}, "mutually exclusive"),
    ({}, {"machine": None}, "needs machine: q35"),
])
def test_refusals(host, run_module, setup, args, message):
    for rel, text in setup.items():
        host.write(rel, text)
    before = host.snapshot()
    code, result = run_module(proxmox_hostpci, dict(ARGS, root=host.root, **args))
    assert code == 1 and message in result["msg"], result
    assert host.snapshot() == before


def test_warns_about_missing_device(host, run_module):
    code, result = run_module(proxmox_hostpci, dict(ARGS, root=host.root, devices=[{"host": "0000:05:00.0"}],
                                                    _ansible_check_mode=True))
    assert code == 0 and any("PCI device 0000:05:00.0 does not exist" in w for w in result["warnings"])
