# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

import os
import re
import tarfile

import pytest

from ansible_collections.passthrough.gpu.plugins.module_utils import _argspec, _files, _pci, _vfio
from ansible_collections.passthrough.gpu.plugins.module_utils import _vfio_runtime as _runtime

from sysfs_tree import FakeKernel

GPU, AUDIO = "0000:01:00.0", "0000:01:00.1"
NATIVE = {GPU: "qxl", AUDIO: "snd_hda_intel", "0000:00:01.0": "bochs-drm",
          "0000:03:01.0": "bochs-drm", "0000:03:02.0": "e1000"}
CONF = "etc/modprobe.d/passthrough-gpu-vfio.conf"
MODULES = "etc/initramfs-tools/modules"
LAB_CONF = ("# managed by passthrough.gpu.vfio_bind: changes here are overwritten\n"
            "# device 0000:01:00.0 1b36:0100 class 038000 module qxl\n"
            "# device 0000:01:00.1 8086:293e class 040300 module snd_hda_intel\n"
            "options vfio-pci ids=1b36:0100,8086:293e\n"
            "softdep qxl pre: vfio-pci\n"
            "softdep snd_hda_intel pre: vfio-pci\n")


def params(root, **overrides):
    values = dict(root=root, devices=[GPU], include_group=True, allow_shared_group=False, force=False,
                  runtime=True, persistent=True, state="bound", blacklist=[], initramfs="initramfs-tools",
                  rebuild_initramfs=True, modprobe_file=_vfio.MODPROBE_FILE)
    values.update(overrides)
    return values


@pytest.fixture
def lab(tree):
    tree.lab()
    os.makedirs(tree.path("lib/modules/6.1.0-50-amd64"))
    tree.write(MODULES, "# List of modules\n")
    return tree


@pytest.mark.parametrize("specs, expected", [
    (["0000:01:00.0"], [GPU]),
    (["01:00.0"], [GPU]),
    ([" 01:00.1 ", "01:00.0"], [AUDIO, GPU]),
    (["1B36:0100"], [GPU]),
    (["1234:1111"], ["0000:00:01.0", "0000:03:01.0"]),
    (["01:00.0", "1b36:0100"], [GPU]),
])
def test_resolve(lab, specs, expected):
    assert _vfio.resolve(specs, _pci.read_devices(lab.root)) == expected


@pytest.mark.parametrize("specs, message", [
    (["dead:beef"], "no PCI device has the id dead:beef"),
    (["05:00.0"], "no PCI device 0000:05:00.0"),
    (["gpu0"], "'gpu0' is neither a PCI address"),
    (["10de:22"], "neither"),
    ([], "devices is empty"),
])
def test_resolve_refuses(lab, specs, message):
    with pytest.raises(_vfio.VfioError, match=message):
        _vfio.resolve(specs, _pci.read_devices(lab.root))


@pytest.mark.parametrize("overrides, chosen, warning", [
    ({}, [GPU, AUDIO], None),
    ({"devices": ["1b36:0100"]}, [GPU, AUDIO], None),
    ({"devices": [AUDIO]}, [GPU, AUDIO], None),
    ({"include_group": False}, [GPU], "0000:01:00.1 stays with the host"),
    ({"devices": ["03:01.0"], "allow_shared_group": True, "persistent": False},
     ["0000:03:01.0", "0000:03:02.0"], "IOMMU group 9 is not isolated"),
    ({"devices": ["03:01.0"], "allow_shared_group": True, "include_group": False, "persistent": False},
     ["0000:03:01.0"], "(allow_shared_group is true)"),
    ({"devices": ["00:01.0"], "force": True, "persistent": False}, ["0000:00:01.0"], "console GPU"),
    ({"devices": ["03:01.0"], "allow_shared_group": True, "force": True},
     ["0000:03:01.0", "0000:03:02.0"], "would also give 0000:00:01.0"),
    # giving devices back needs no isolation
    ({"devices": ["03:01.0"], "state": "unbound"}, ["0000:03:01.0", "0000:03:02.0"], None),
])
def test_select(lab, overrides, chosen, warning):
    got, warnings = _vfio.select(_pci.read_iommu(lab.root), params(lab.root, **overrides))
    assert got == chosen
    if warning:
        assert any(warning in w for w in warnings), warnings
    else:
        assert warnings == []


@pytest.mark.parametrize("overrides, messages", [
    ({"devices": ["03:01.0"], "persistent": False},
     ["IOMMU group 9 is not isolated: 0000:03:01.0 [1234:1111] class 038000 shares group 9 with "
      "0000:03:02.0 [8086:100e] class 020000", "allow_shared_group=true"]),
    ({"devices": ["00:01.0"], "persistent": False}, ["console GPU (boot_vga 1)", "force=true"]),
    ({"devices": ["00:01.0"]}, ["console GPU", "by id 1234:1111 would also give 0000:03:01.0"]),
    ({"devices": ["00:02.0"]}, ["0000:00:02.0 [1b36:000c] class 060400 is a PCI bridge"]),
    ({"devices": ["1234:1111"], "persistent": False}, ["console GPU", "group 9 is not isolated"]),
])
def test_select_refuses(lab, overrides, messages):
    with pytest.raises(_vfio.VfioError) as error:
        _vfio.select(_pci.read_iommu(lab.root), params(lab.root, **overrides))
    assert str(error.value).startswith("refusing, nothing was changed: ")
    for message in messages:
        assert message in str(error.value)


def test_select_refuses_when_the_iommu_is_off(tree):
    tree.device(GPU, vendor="1b36", device="0100", klass="038000", driver="qxl")
    with pytest.raises(_vfio.VfioError, match="the IOMMU is off"):
        _vfio.select(_pci.read_iommu(tree.root), params(tree.root))


@pytest.mark.parametrize("records, blacklist, expected", [
    ({}, [], None),
    ({GPU: {"address": GPU, "id": "1b36:0100", "class": "038000", "module": "qxl"},
      AUDIO: {"address": AUDIO, "id": "8086:293e", "class": "040300", "module": "snd_hda_intel"}}, [], LAB_CONF),
    ({"0000:0a:00.0": {"address": "0000:0a:00.0", "id": "10de:2204", "class": "030000", "module": "nouveau"},
      "0000:0a:00.1": {"address": "0000:0a:00.1", "id": "10de:1aef", "class": "040300", "module": "snd_hda_intel"},
      "0000:0b:00.0": {"address": "0000:0b:00.0", "id": "10de:2204", "class": "030000", "module": "-"}},
     ["nouveau", "nouveau"],
     "# managed by passthrough.gpu.vfio_bind: changes here are overwritten\n"
     "# device 0000:0a:00.0 10de:2204 class 030000 module nouveau\n"
     "# device 0000:0a:00.1 10de:1aef class 040300 module snd_hda_intel\n"
     "# device 0000:0b:00.0 10de:2204 class 030000 module -\n"
     "options vfio-pci ids=10de:1aef,10de:2204 disable_vga=1\n"
     "softdep nouveau pre: vfio-pci\n"
     "softdep snd_hda_intel pre: vfio-pci\n"
     "blacklist nouveau\n"),
])
def test_render_modprobe(records, blacklist, expected):
    text = _vfio.render_modprobe(records, blacklist)
    assert text == expected
    if text:
        assert _vfio.parse_modprobe(text) == (records, sorted(set(blacklist)))


def test_alias_modules(lab):
    lab.write("lib/modules/6.1.0-50-amd64/modules.alias",
              "# Aliases extracted from modules themselves.\n"
              "alias pci:v00001B36d00000100sv*sd*bc03sc*i* qxl\n"
              "alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci\n"
              "alias pci:v*d*sv*sd*bc03sc*i* vfio_pci\n"
              "alias usb:v1B36p0100d*dc*dsc*dp*ic*isc*ip*in* not_pci\n")
    alias = "pci:v00001B36d00000100sv00001AF4sd00001100bc03sc80i00"
    assert _vfio.alias_modules(lab.root, alias) == ["qxl"]
    assert _vfio.alias_modules(lab.root, "pci:v00008086d0000293Esv0bc04sc03i00") == []
    # A device held by vfio-pci with no record: its host module comes from modules.alias.
    device = dict(_pci.read_device(lab.root, GPU), driver="vfio-pci")
    lab.write("sys/bus/pci/devices/%s/modalias" % GPU, alias + "\n")
    assert _vfio.native_module(lab.root, device, {}) == "qxl"
    record = {GPU: {"module": "nouveau"}}
    assert _vfio.native_module(lab.root, device, record) == "nouveau"


# ---- the runtime plan against the tree --------------------------------------------------

BIND_WRITES = [
    ("sys/bus/pci/devices/%s/driver_override" % GPU, "vfio-pci"),
    ("sys/bus/pci/devices/%s/driver/unbind" % GPU, GPU),
    ("sys/bus/pci/drivers_probe", GPU),
    ("sys/bus/pci/devices/%s/driver_override" % AUDIO, "vfio-pci"),
    ("sys/bus/pci/devices/%s/driver/unbind" % AUDIO, AUDIO),
    ("sys/bus/pci/drivers_probe", AUDIO),
]


@pytest.mark.parametrize("loaded, modprobe", [
    (["qxl", "snd_hda_intel", "vfio-pci"], []),
    (["qxl", "snd_hda_intel"], [["/usr/sbin/modprobe", "vfio-pci"]]),
])
def test_bind_sequence(lab, loaded, modprobe):
    kernel = FakeKernel(lab, NATIVE, loaded=loaded)
    runtime = _runtime.Runtime(lab.root, kernel, check_mode=False)
    after = runtime.bind([(GPU, "qxl"), (AUDIO, "snd_hda_intel")])
    assert after == {GPU: "vfio-pci", AUDIO: "vfio-pci"}
    assert kernel.writes == BIND_WRITES and kernel.commands == modprobe
    assert [w["path"] for w in runtime.writes] == ["/" + path for path, value in BIND_WRITES]
    runtime.wait_for_group(8)
    assert os.path.exists(lab.path("dev/vfio/8"))
    assert not any(w[1] for w in kernel.writes if "new_id" in w[0])


def test_bind_check_mode_writes_nothing(lab):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel"])
    runtime = _runtime.Runtime(lab.root, kernel, check_mode=True)
    assert runtime.bind([(GPU, "qxl"), (AUDIO, "snd_hda_intel")]) == {GPU: "vfio-pci", AUDIO: "vfio-pci"}
    runtime.wait_for_group(8)
    assert kernel.writes == [] and kernel.commands == []
    assert [(w["path"].lstrip("/"), w["value"]) for w in runtime.writes] == BIND_WRITES
    assert runtime.commands == [{"argv": ["modprobe", "vfio-pci"], "ran": False, "rc": None}]


def test_bind_rolls_back_when_verification_fails(lab):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"],
                        refuse=[(AUDIO, "vfio-pci")])
    runtime = _runtime.Runtime(lab.root, kernel, check_mode=False)
    with pytest.raises(_runtime.RuntimeBindError) as error:
        runtime.bind([(GPU, "qxl"), (AUDIO, "snd_hda_intel")])
    message = str(error.value)
    assert "binding 0000:01:00.1 to vfio-pci failed: its driver is none, not vfio-pci" in message
    assert "0000:01:00.1 on snd_hda_intel" in message and "0000:01:00.0 on qxl" in message
    assert [kernel.driver(GPU), kernel.driver(AUDIO)] == ["qxl", "snd_hda_intel"]
    assert kernel.writes[len(BIND_WRITES):] == [
        ("sys/bus/pci/devices/%s/driver_override" % AUDIO, "\n"),
        ("sys/bus/pci/drivers_probe", AUDIO),
        ("sys/bus/pci/devices/%s/driver_override" % GPU, "\n"),
        ("sys/bus/pci/devices/%s/driver/unbind" % GPU, GPU),
        ("sys/bus/pci/drivers_probe", GPU),
    ]
    assert not os.path.exists(lab.path("dev/vfio/8"))
    assert kernel.sleeps == _runtime.VERIFY_TRIES - 1


def test_unbind_sequence_names_the_host_driver(lab):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"])
    _runtime.Runtime(lab.root, kernel, check_mode=False).bind([(GPU, "qxl"), (AUDIO, "snd_hda_intel")])
    # vfio-pci loaded with ids= would win a plain probe: the fake prefers it as the native driver.
    kernel.native.update({GPU: "vfio-pci", AUDIO: "vfio-pci"})
    del kernel.writes[:]
    runtime = _runtime.Runtime(lab.root, kernel, check_mode=False)
    after = runtime.unbind([(GPU, "vfio-pci", "qxl"), (AUDIO, "vfio-pci", "snd_hda_intel")])
    assert after == {GPU: "qxl", AUDIO: "snd_hda_intel"}
    assert kernel.writes[:4] == [
        ("sys/bus/pci/devices/%s/driver_override" % GPU, "qxl"),
        ("sys/bus/pci/devices/%s/driver/unbind" % GPU, GPU),
        ("sys/bus/pci/drivers_probe", GPU),
        ("sys/bus/pci/devices/%s/driver_override" % GPU, "\n"),
    ]
    assert not os.path.exists(lab.path("dev/vfio/8"))


def test_unbind_loads_the_host_module(lab):
    kernel = FakeKernel(lab, NATIVE, loaded=["vfio-pci"])
    os.unlink(lab.path("sys/bus/pci/devices", AUDIO, "driver"))
    os.symlink(lab.path("sys/bus/pci/drivers/vfio-pci"), lab.path("sys/bus/pci/devices", AUDIO, "driver"))
    runtime = _runtime.Runtime(lab.root, kernel, check_mode=False)
    assert runtime.unbind([(AUDIO, "vfio-pci", "snd_hda_intel")]) == {AUDIO: "snd_hda_intel"}
    assert kernel.commands == [["/usr/sbin/modprobe", "snd_hda_intel"]]


# ---- the whole plan: runtime, files, initramfs ------------------------------------------

@pytest.fixture
def live(monkeypatch):
    """Run as if root were / (the tree stands in for the machine)."""
    monkeypatch.setattr(_argspec, "root_is_live", lambda root: True)


def snapshot(tree):
    return tree.files_state(CONF, MODULES)


def test_run_bound_then_idempotent_then_unbound(lab, live):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel"])
    first = _vfio.run(params(lab.root), kernel, check_mode=False)
    assert first["changed"] is True and first["reboot_required"] is False
    assert [d["driver_after"] for d in first["devices"]] == ["vfio-pci", "vfio-pci"]
    assert [d["host_module"] for d in first["devices"]] == ["qxl", "snd_hda_intel"]
    assert kernel.commands == [["/usr/sbin/modprobe", "vfio-pci"], ["/usr/sbin/update-initramfs", "-u", "-k", "all"]]
    assert [c["argv"][0] for c in first["commands"]] == ["modprobe", "update-initramfs"]
    assert open(lab.path(CONF)).read() == LAB_CONF
    assert "vfio_virqfd\n" in open(lab.path(MODULES)).read()
    assert [e["before_header"] for e in first["diff"]] == [
        "/etc/initramfs-tools/modules", "/%s (absent)" % CONF, "PCI drivers"]
    assert first["diff"][2]["after"] == "%s vfio-pci\n%s vfio-pci\n" % (GPU, AUDIO)

    second = _vfio.run(params(lab.root), kernel, check_mode=False)
    assert second["changed"] is False and second["commands"] == [] and second["diff"] == []
    assert len(kernel.commands) == 2

    kernel.native.update({GPU: "vfio-pci", AUDIO: "vfio-pci"})  # as if vfio-pci had ids= loaded
    gone = _vfio.run(params(lab.root, state="unbound"), kernel, check_mode=False)
    assert gone["changed"] is True
    assert [d["driver_after"] for d in gone["devices"]] == ["qxl", "snd_hda_intel"]
    assert not os.path.exists(lab.path(CONF))
    assert open(lab.path(MODULES)).read() == "# List of modules\n"
    again = _vfio.run(params(lab.root, state="unbound"), kernel, check_mode=False)
    assert again["changed"] is False


@pytest.mark.parametrize("overrides", [{}, {"state": "unbound"}, {"runtime": False}, {"persistent": False}])
def test_check_mode_writes_nothing(lab, live, overrides):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel"])
    if overrides.get("state") == "unbound":
        _vfio.run(params(lab.root), kernel, check_mode=False)
        del kernel.writes[:], kernel.commands[:]
    before = snapshot(lab)
    drivers = [kernel.driver(GPU), kernel.driver(AUDIO)]
    result = _vfio.run(params(lab.root, **overrides), kernel, check_mode=True)
    assert result["changed"] is True
    assert snapshot(lab) == before
    assert kernel.writes == [] and kernel.commands == []
    assert [kernel.driver(GPU), kernel.driver(AUDIO)] == drivers
    assert all(not c["ran"] for c in result["commands"])


def test_rebuild_failure_restores_every_file(lab, live):
    lab.write(CONF, _vfio.HEADER + "\n# an earlier run's content\n")
    before = snapshot(lab)
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"], rebuild_rc=1)
    with pytest.raises(_vfio.VfioError) as error:
        _vfio.run(params(lab.root, runtime=False), kernel, check_mode=False)
    assert "update-initramfs -u -k all failed (rc 1)" in str(error.value)
    assert "no space left on device" in str(error.value)
    after = snapshot(lab)
    assert [after[k][0] for k in after] == [before[k][0] for k in before]


def test_rebuild_not_wanted(lab, live):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"])
    result = _vfio.run(params(lab.root, runtime=False, rebuild_initramfs=False), kernel, check_mode=False)
    assert result["initramfs_rebuild_required"] is True and result["reboot_required"] is True
    assert kernel.commands == [] and os.path.exists(lab.path(CONF))


def test_two_gpus_add_up_and_leave_one_by_one(lab, live):
    lab.device("0000:0a:00.0", vendor="10de", device="2204", klass="030000", driver="nouveau", group=12)
    kernel = FakeKernel(lab, dict(NATIVE, **{"0000:0a:00.0": "nouveau"}),
                        loaded=["qxl", "snd_hda_intel", "vfio-pci", "nouveau"])
    _vfio.run(params(lab.root, runtime=False), kernel, check_mode=False)
    _vfio.run(params(lab.root, runtime=False, devices=["0a:00.0"], blacklist=["nouveau"]), kernel, False)
    text = open(lab.path(CONF)).read()
    assert "ids=10de:2204,1b36:0100,8086:293e disable_vga=1\n" in text and "blacklist nouveau\n" in text
    _vfio.run(params(lab.root, runtime=False, devices=["0a:00.0"], state="unbound", blacklist=["nouveau"]),
              kernel, False)
    assert open(lab.path(CONF)).read() == LAB_CONF


@pytest.mark.parametrize("names, message", [
    (["nouveau; rm"], "not a kernel module name"),
    (["vfio-pci"], "would stop vfio-pci itself"),
])
def test_blacklist_names_are_checked(lab, names, message):
    with pytest.raises(_vfio.VfioError, match=message):
        _vfio.run(params(lab.root, blacklist=names), FakeKernel(lab, NATIVE), check_mode=True)


def test_not_live_says_what_it_did_not_do(lab):
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel"])
    result = _vfio.run(params(lab.root), kernel, check_mode=False)
    assert kernel.writes == [] and kernel.commands == []
    assert result["initramfs_rebuild_required"] is True and result["reboot_required"] is True
    assert result["not_done"] == [
        "runtime binding: root is %s, not /, so the running kernel was not touched" % lab.root,
        "update-initramfs -u -k all: root is %s, not /" % lab.root]
    assert isinstance(_files.read_text(lab.path(CONF)), str)


@pytest.mark.parametrize("overrides, chosen, refusal", [
    ({}, [GPU, AUDIO], None),
    ({"devices": ["03:01.0"]}, None, "IOMMU group 9 is not isolated"),
    ({"devices": ["00:01.0"], "persistent": False}, None, "console GPU (boot_vga 1)"),
])
def test_select_on_the_captured_lab_tree(tmp_path, overrides, chosen, refusal):
    """The same choices on the sysfs captured from the lab VM's real kernel (tests/unit/fixtures/lab)."""
    fixture = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "lab", "sysfs.tar.gz")
    with tarfile.open(fixture) as archive:
        archive.extractall(str(tmp_path))  # our own fixture: links and names are known
    iommu = _pci.read_iommu(str(tmp_path))
    if refusal:
        with pytest.raises(_vfio.VfioError, match=re.escape(refusal)):
            _vfio.select(iommu, params(str(tmp_path), **overrides))
    else:
        assert _vfio.select(iommu, params(str(tmp_path), **overrides)) == (chosen, [])


def test_rebuild_failure_after_runtime_says_what_stays(lab, live):
    before = snapshot(lab)
    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"], rebuild_rc=2)
    with pytest.raises(_vfio.VfioError) as error:
        _vfio.run(params(lab.root), kernel, check_mode=False)
    assert "update-initramfs -u -k all failed (rc 2)" in str(error.value)
    assert "The runtime change stays: 0000:01:00.0 vfio-pci, 0000:01:00.1 vfio-pci." in str(error.value)
    assert [v[0] if v else v for v in snapshot(lab).values()] == [v[0] if v else v for v in before.values()]


class Killed(BaseException):
    """The module's process dying (SIGHUP/SIGKILL) while the rebuild runs: nothing after it happens."""


class KilledDuringRebuild(FakeKernel):
    def run(self, argv, environ_update=None):
        if os.path.basename(argv[0]) == "update-initramfs":
            self.commands.append(list(argv))
            raise Killed()
        return FakeKernel.run(self, argv, environ_update)


PENDING = "var/lib/passthrough-gpu/vfio_bind-initramfs.pending"


@pytest.mark.parametrize("state", ["bound", "unbound"])
def test_a_run_killed_during_the_rebuild_is_finished_by_the_next(lab, live, state):
    if state == "unbound":
        _vfio.run(params(lab.root, runtime=False), FakeKernel(lab, NATIVE, loaded=["vfio-pci"]), check_mode=False)
    killed = KilledDuringRebuild(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"])
    with pytest.raises(Killed):
        _vfio.run(params(lab.root, runtime=False, state=state), killed, check_mode=False)
    assert os.path.exists(lab.path(PENDING))  # the files are written, the initramfs is not rebuilt
    files = snapshot(lab)

    kernel = FakeKernel(lab, NATIVE, loaded=["qxl", "snd_hda_intel", "vfio-pci"])
    check = _vfio.run(params(lab.root, runtime=False, state=state), kernel, check_mode=True)
    assert check["changed"] is True and check["files"] == [] and kernel.commands == []
    assert [c["argv"] for c in check["commands"]] == [["update-initramfs", "-u", "-k", "all"]]
    assert any("did not finish update-initramfs -u -k all" in w and "it is due" in w for w in check["warnings"])

    rerun = _vfio.run(params(lab.root, runtime=False, state=state), kernel, check_mode=False)
    assert rerun["changed"] is True and rerun["files"] == []
    assert kernel.commands == [["/usr/sbin/update-initramfs", "-u", "-k", "all"]]
    assert any("running it now" in w for w in rerun["warnings"])
    assert not os.path.exists(lab.path(PENDING)) and snapshot(lab) == files

    third = _vfio.run(params(lab.root, runtime=False, state=state), kernel, check_mode=False)
    assert third["changed"] is False and len(kernel.commands) == 1 and third["warnings"] == []


def test_a_failed_rebuild_keeps_an_earlier_runs_marker(lab, live):
    with pytest.raises(Killed):
        _vfio.run(params(lab.root, runtime=False), KilledDuringRebuild(lab, NATIVE, loaded=["vfio-pci"]),
                  check_mode=False)
    failing = FakeKernel(lab, NATIVE, loaded=["vfio-pci"], rebuild_rc=1)
    with pytest.raises(_vfio.VfioError, match=r"failed \(rc 1\), no file was changed in this run"):
        _vfio.run(params(lab.root, runtime=False), failing, check_mode=False)
    assert os.path.exists(lab.path(PENDING)), "the initramfs is still old: the rebuild stays due"


def test_a_failed_rebuild_of_this_run_leaves_no_marker(lab, live):
    failing = FakeKernel(lab, NATIVE, loaded=["vfio-pci"], rebuild_rc=1)
    with pytest.raises(_vfio.VfioError, match="were put back as they were"):
        _vfio.run(params(lab.root, runtime=False), failing, check_mode=False)
    assert not os.path.exists(lab.path("var/lib/passthrough-gpu")) or not os.listdir(
        lab.path("var/lib/passthrough-gpu"))
    again = _vfio.run(params(lab.root, runtime=False, rebuild_initramfs=False), failing, check_mode=False)
    assert not os.path.exists(lab.path(PENDING)), "no marker when the module does not run the rebuild"
    assert again["initramfs_rebuild_required"] is True


def test_a_marker_off_host_is_left_alone(lab):
    """root is not /: commands never run there, so a marker under it is not this run's business."""
    lab.write(PENDING, "left by a run on the host itself\n")
    result = _vfio.run(params(lab.root, runtime=False), FakeKernel(lab, NATIVE), check_mode=False)
    assert result["commands"] == [] and result["initramfs_rebuild_required"] is True
    assert os.path.exists(lab.path(PENDING))
    assert not any("did not finish" in w for w in result["warnings"])


def test_rebuild_failure_names_the_hook_from_stdout_and_stderr(lab, live):
    class HookFails(FakeKernel):
        def run(self, argv, environ_update=None):
            if os.path.basename(argv[0]) == "update-initramfs":
                return 1, ("update-initramfs: Generating /boot/initrd.img-6.1.0-50-amd64\n"
                           "E: /etc/initramfs-tools/hooks/zz-broken failed with return 1.\n"), \
                    "broken on purpose\nupdate-initramfs: failed for /boot/initrd.img-6.1.0-50-amd64 with 1.\n"
            return FakeKernel.run(self, argv, environ_update)

    with pytest.raises(_vfio.VfioError) as error:
        _vfio.run(params(lab.root, runtime=False), HookFails(lab, NATIVE, loaded=["vfio-pci"]), check_mode=False)
    assert "E: /etc/initramfs-tools/hooks/zz-broken failed with return 1." in str(error.value)
    assert "broken on purpose" in str(error.value)
