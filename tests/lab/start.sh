#!/usr/bin/env bash
# Boot the lab VM (a throw-away copy of the built image) in the background under QEMU/TCG with an
# Intel IOMMU and devices laid out like a GPU passthrough host, and wait until ssh answers.
# See README.md for the device table.
#
# Environment: LAB_SSH_PORT (2222), LAB_BOOT_TIMEOUT (seconds, 300), LAB_FLAVOUR (grub),
# LAB_MEMORY (MiB, 2048), LAB_CACHE, LAB_EXTRA_DEVICES (more QEMU arguments, split on whitespace and
# appended to the command line: e.g. the root ports and devices of benchmarks/lab_sysfs_scan.py).
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
source "$(dirname "$0")/lib.sh"

start=$SECONDS
port=${LAB_SSH_PORT:-2222}
boot_timeout=${LAB_BOOT_TIMEOUT:-300}
memory=${LAB_MEMORY:-2048}
[[ "$port" =~ ^[0-9]+$ ]] || lab_die "LAB_SSH_PORT must be a number"
[[ "$boot_timeout" =~ ^[0-9]+$ ]] || lab_die "LAB_BOOT_TIMEOUT must be a number of seconds"
[ -s "$IMAGE_DIR/recipe.sha256" ] || lab_die "no $LAB_FLAVOUR image: run tests/lab/build-image.sh"
command -v qemu-system-x86_64 >/dev/null || lab_die "qemu-system-x86_64 is missing: run tools/bootstrap.sh"
read -r -a extra_devices <<<"${LAB_EXTRA_DEVICES:-}"
# A VM with other extra devices is another instance: "already up" must not hand it out.
instance="flavour=$LAB_FLAVOUR port=$port image=$(cat "$IMAGE_DIR/recipe.sha256") extra=$(echo "${extra_devices[*]}" | sha256sum | cut -c1-16)"

wait_for_ssh() {
  lab_ssh_init
  local deadline=$((SECONDS + boot_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    lab_running || return 1
    if timeout 20 "${LAB_SSH[@]}" true </dev/null 2>/dev/null; then
      return 0
    fi
    sleep 2
  done
  return 1
}

if lab_running; then
  if [ "$(cat "$RUN_DIR/instance" 2>/dev/null)" != "$instance" ]; then
    lab_die "another lab VM is running ($(cat "$RUN_DIR/instance" 2>/dev/null || echo unknown)); stop it with tests/lab/stop.sh"
  fi
  wait_for_ssh || lab_die "the running lab VM does not answer ssh on port $port"
  lab_log "lab VM is already up (ssh port $port)"
  exit 0
fi

bash "$LAB_DIR/stop.sh" >/dev/null   # leftovers of a VM that died
mkdir -p "$RUN_DIR"
# Everything the VM writes goes to the run dir; the image stays pristine for the next start.
qemu-img create -q -f qcow2 -b "$IMAGE_DIR/root.img" -F raw "$RUN_DIR/root.qcow2"
cp --sparse=always "$IMAGE_DIR/esp.img" "$RUN_DIR/esp.img"
cp "$IMAGE_DIR/OVMF_VARS.fd" "$RUN_DIR/OVMF_VARS.fd"
echo "$port" >"$RUN_DIR/ssh_port"
echo "$instance" >"$RUN_DIR/instance"
: >"$RUN_DIR/serial.log"

# PCI layout (fixed addresses, so tests can name devices):
#   00:01.0 VGA: the console GPU (boot_vga=1)
#   00:02.0 root port -> 01:00.0 "GPU" (QXL, class 0380, 16 GiB 64-bit prefetchable BAR, ROM)
#                        01:00.1 its HDMI-audio-like companion (ICH9 HDA)
#   00:03.0 root port -> 02:00.0 PCIe-to-PCI bridge -> 03:01.0 second display (x86-only ROM),
#                        03:02.0 e1000: one IOMMU group that is not isolated
#   00:04.0 virtio-net (ssh), 00:05.0 root disk, 00:06.0 ESP
# shellcheck disable=SC2054  # QEMU options are comma-separated lists
qemu_args=(
  -name "lab-$LAB_FLAVOUR" -accel tcg -cpu max -machine q35,kernel-irqchip=split
  -smp 2 -m "$memory" -nodefaults -display none
  -device intel-iommu,intremap=on,caching-mode=on
  -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE"
  -drive "if=pflash,format=raw,file=$RUN_DIR/OVMF_VARS.fd"
  -serial "file:$RUN_DIR/serial.log"
  -device VGA,bus=pcie.0,addr=01.0
  -device pcie-root-port,id=rp1,bus=pcie.0,addr=02.0,chassis=1,slot=1
  -device "qxl,bus=rp1,addr=00.0,multifunction=on,vram64_size_mb=16384,romfile=$IMAGE_DIR/gpu.rom"
  -device ich9-intel-hda,id=hda,bus=rp1,addr=00.1
  -audiodev none,id=snd0 -device hda-output,bus=hda.0,audiodev=snd0
  -device pcie-root-port,id=rp2,bus=pcie.0,addr=03.0,chassis=2,slot=2
  -device pcie-pci-bridge,id=pb1,bus=rp2,addr=00.0
  -device secondary-vga,bus=pb1,addr=01.0,romfile=vgabios-stdvga.bin
  -netdev user,id=n1,restrict=on -device e1000,netdev=n1,bus=pb1,addr=02.0,romfile=
  -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22"
  -device virtio-net-pci,netdev=n0,bus=pcie.0,addr=04.0,romfile=
  -drive "if=none,id=root,format=qcow2,file=$RUN_DIR/root.qcow2"
  -device virtio-blk-pci,drive=root,bus=pcie.0,addr=05.0,bootindex=1
  -drive "if=none,id=esp,format=raw,file=$RUN_DIR/esp.img"
  -device virtio-blk-pci,drive=esp,bus=pcie.0,addr=06.0,bootindex=0
  -pidfile "$PIDFILE" -daemonize
  "${extra_devices[@]}"
)
lab_log "starting the $LAB_FLAVOUR lab VM (ssh on 127.0.0.1:$port, serial log $RUN_DIR/serial.log)"
if ! qemu-system-x86_64 "${qemu_args[@]}"; then
  bash "$LAB_DIR/stop.sh" >/dev/null
  lab_die "QEMU did not start (is port $port free?)"
fi

if ! wait_for_ssh; then
  lab_log "no ssh after $((SECONDS - start))s (LAB_BOOT_TIMEOUT=$boot_timeout); serial log tail:"
  tail -n 40 "$RUN_DIR/serial.log" >&2 || true
  bash "$LAB_DIR/stop.sh" >&2 || true
  exit 1
fi
lab_log "lab VM up: ssh answered $((SECONDS - start))s after start"
