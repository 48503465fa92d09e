#!/usr/bin/env bash
# Build the lab VM image: Debian 12 with GRUB on UEFI, from Debian packages only, with no mount
# or loop device for the image (debootstrap, files written into the tree, mkfs.ext4 -d, a FAT
# ESP made with mtools), then one boot of the image in which update-grub writes the real
# /boot/grub/grub.cfg. Rebuilt only when this recipe changes.
#
# Environment: LAB_CACHE (default .cache/lab), LAB_FLAVOUR (grub), LAB_MIRROR (Debian mirror),
# LAB_FIRSTBOOT_TIMEOUT (seconds for the update-grub boot, default 900).
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
source "$(dirname "$0")/lib.sh"

start=$SECONDS
mirror=${LAB_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
packages=linux-image-amd64,initramfs-tools,systemd-sysv,udev,kmod,dbus,openssh-server,python3,pciutils,iproute2,procps,netbase,grub-efi-amd64-bin,grub2-common
root_size=3G
esp_kib=65536
firstboot_timeout=${LAB_FIRSTBOOT_TIMEOUT:-900}

for tool in debootstrap mkfs.ext4 debugfs mkfs.vfat mmd mcopy grub-mkstandalone qemu-system-x86_64 ssh-keygen; do
  command -v "$tool" >/dev/null || lab_die "$tool is missing: run tools/bootstrap.sh"
done
for f in "$OVMF_CODE" "$OVMF_VARS"; do
  [ -r "$f" ] || lab_die "$f is missing: run tools/bootstrap.sh"
done
[ "$(id -u)" -eq 0 ] || lab_die "debootstrap and chroot need root"

# One build at a time per cache; the second waits (bounded) and then finds the image up to date.
exec 9>"$LAB_CACHE/.build.lock"
flock -w 3600 9 || lab_die "another build holds $LAB_CACHE/.build.lock"

[ -s "$LAB_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C lab -f "$LAB_KEY"

recipe=$( {
  cat "$LAB_DIR/build-image.sh" "$LAB_DIR/lib.sh" "$LAB_KEY.pub"
  echo "$LAB_FLAVOUR $mirror"
} | sha256sum | cut -d' ' -f1)
if [ -f "$IMAGE_DIR/recipe.sha256" ] && [ "$(cat "$IMAGE_DIR/recipe.sha256")" = "$recipe" ]; then
  lab_log "lab image up to date ($IMAGE_DIR, checked in $((SECONDS - start))s)"
  exit 0
fi
lab_log "building the $LAB_FLAVOUR image in $IMAGE_DIR (recipe ${recipe:0:12})"

rm -rf "$LAB_CACHE"/tmp.build-*  # left by a killed build; we hold the lock
work=$(mktemp -d "$LAB_CACHE/tmp.build-XXXXXX")
child=
cleanup() {
  if [ -n "$child" ]; then kill "$child" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
# `timeout` runs in its own process group, so a killed build must end it here; and without
# the lock's fd 9, a straggler cannot hold up the next build.
bounded() {
  local rc=0
  timeout "$@" 9>&- &
  child=$!
  wait "$child" || rc=$?
  child=
  return "$rc"
}
tree=$work/tree
out=$work/image
mkdir -p "$tree" "$out" "$LAB_CACHE/debs"

step() { lab_log "[$((SECONDS - start))s] $*"; }
fail_log() { tail -n 40 "$1" >&2; lab_die "$2 (log above: $1)"; }

# 1. The debootstrapped tree, kept as a tarball keyed by what debootstrap was asked, so a change
#    further down the recipe costs no debootstrap; its .debs stay in debs/ for a changed package list.
base_key=$(echo "$suite $mirror minbase $packages" | sha256sum | cut -c1-16)
base=$LAB_CACHE/base-$base_key.tar
if [ ! -s "$base" ]; then
  step "debootstrap $suite ($mirror)"
  # A private mount namespace: the /proc and /sys debootstrap mounts in the tree vanish with it.
  bounded 3600 unshare --mount --propagation private -- \
    debootstrap --variant=minbase --include="$packages" --cache-dir="$LAB_CACHE/debs" \
    "$suite" "$tree" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    fail_log "$work/debootstrap.log" "debootstrap failed"
  rm -f "$tree"/var/cache/apt/archives/*.deb
  tar --numeric-owner --xattrs -C "$tree" -cf "$base.tmp" .
  mv "$base.tmp" "$base"
  find "$LAB_CACHE" -maxdepth 1 -name 'base-*.tar' ! -name "${base##*/}" -delete
else
  step "base tree from ${base##*/}"
  tar --numeric-owner --xattrs -C "$tree" -xf "$base"
fi

# 2. Configuration, written straight into the tree.
step "configuring the tree"
uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=1AB2C3D4   # FAT volume id: udev names the ESP by-uuid/1AB2-C3D4 (upper case)
kernel=$(cd "$tree/boot" && ls vmlinuz-*)
initrd=initrd.img-${kernel#vmlinuz-}
[ -f "$tree/boot/$initrd" ] || lab_die "no $initrd in the tree"

echo lab >"$tree/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlab\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$tree/etc/hosts"
echo 'nameserver 10.0.2.3' >"$tree/etc/resolv.conf"   # QEMU user-mode networking's DNS
echo 'LANG=C.UTF-8' >"$tree/etc/default/locale"
cat >"$tree/etc/fstab" <<EOF
UUID=$uuid / ext4 errors=remount-ro 0 1
UUID=${esp_id:0:4}-${esp_id:4:4} /boot/efi vfat umask=0077,nofail 0 2
EOF
mkdir -p "$tree/boot/efi"
# The marker the ESP's GRUB searches for to find this filesystem.
echo "lab root filesystem $uuid" >"$tree/.lab-root"

# Only the user-mode NIC (virtio) gets DHCP; the other NICs stay unconfigured like spare ports.
cat >"$tree/etc/systemd/network/10-lab.network" <<'EOF'
[Match]
Driver=virtio_net

[Network]
DHCP=ipv4
EOF
chroot "$tree" systemctl -q enable systemd-networkd
# Timers that would run apt or fstrim in the middle of a test.
chroot "$tree" systemctl -q mask apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer

cat >"$tree/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
install -d -m 700 "$tree/root/.ssh"
install -m 600 "$LAB_KEY.pub" "$tree/root/.ssh/authorized_keys"

# /etc/default/grub as Debian ships it, with the lab's values: kernel args that modules may edit
# go in GRUB_CMDLINE_LINUX_DEFAULT (no "quiet"), the serial console stays in GRUB_CMDLINE_LINUX.
cp "$tree/usr/share/grub/default/grub" "$tree/etc/default/grub"
sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
  -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"/' \
  -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=ttyS0,115200"/' \
  -e 's/^#\?GRUB_TERMINAL=.*/GRUB_TERMINAL="serial console"/' "$tree/etc/default/grub"
echo 'GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"' >>"$tree/etc/default/grub"
grep -q '^GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"$' "$tree/etc/default/grub" ||
  lab_die "/etc/default/grub template changed: GRUB_CMDLINE_LINUX_DEFAULT not set"

# grub-mkconfig cannot probe the root device from a chroot, so the first boot uses this
# stand-in, and a one-shot unit runs the real update-grub and powers off.
mkdir -p "$tree/boot/grub"
cat >"$tree/boot/grub/grub.cfg" <<EOF
# Stand-in for the first boot only; update-grub replaces it (tests/lab/build-image.sh).
set timeout=0
menuentry 'lab first boot' {
  search --no-floppy --fs-uuid --set=root $uuid
  linux /boot/$kernel root=UUID=$uuid ro console=ttyS0,115200
  initrd /boot/$initrd
}
EOF
cat >"$tree/etc/systemd/system/lab-firstboot.service" <<'EOF'
[Unit]
Description=Lab image first boot: update-grub, then power off
ConditionPathExists=!/var/lib/lab-firstboot.done
After=local-fs.target

[Service]
Type=oneshot
ExecStart=/usr/sbin/update-grub
ExecStart=/usr/bin/touch /var/lib/lab-firstboot.done
ExecStart=/usr/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
EOF
chroot "$tree" systemctl -q enable lab-firstboot.service

# 3. The images.
step "mkfs.ext4 -d ($root_size sparse)"
mkfs.ext4 -q -F -L labroot -U "$uuid" -d "$tree" "$out/root.img" "$root_size" >/dev/null

step "ESP with grub-mkstandalone"
# The embedded config runs in GRUB's memdisk: without the search, configfile would look there.
# The root disk needs a bootindex too: OVMF connects only the disks in the boot order, and
# GRUB sees no other. Failing, it powers off rather than loop, so start.sh fails fast.
cat >"$work/embedded.cfg" <<'EOF'
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
if search --no-floppy --file --set=root /.lab-root; then
  configfile ($root)/boot/grub/grub.cfg
fi
echo "lab: no disk with /.lab-root found; powering off"
sleep 3
halt
EOF
grub-mkstandalone -O x86_64-efi -o "$work/BOOTX64.EFI" --fonts= --locales= --themes= \
  "boot/grub/grub.cfg=$work/embedded.cfg"
mkfs.vfat -C -F 32 -n LABESP -i "$esp_id" "$out/esp.img" "$esp_kib" >/dev/null
mmd -i "$out/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$out/esp.img" "$work/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
cp "$OVMF_VARS" "$out/OVMF_VARS.fd"

# An option ROM for the lab's GPU (QXL has none, a real card has one): an x86 image and a UEFI
# image, both naming 1b36:0100, so ROM checks find a card a guest's OVMF could show a picture
# from. Only the headers are real: the UEFI image says "application", which OVMF never loads.
python3 - "$out/gpu.rom" <<'PY'
import struct
import sys

def image(code_type, last):
    data = bytearray(1024)
    data[0:2] = b"\x55\xaa"
    if code_type == 3:  # EFI: size, 0x0EF1, subsystem 10, machine x64, uncompressed, image offset
        struct.pack_into("<HIHHH8xH", data, 2, 2, 0x0EF1, 10, 0x8664, 0, 0x40)
    else:
        data[2:4] = b"\x02\xcb"  # size in 512-byte units; the init entry is a far return
    struct.pack_into("<H", data, 0x18, 0x1C)
    struct.pack_into("<4sHHHHB3sHHBBHHH", data, 0x1C, b"PCIR", 0x1B36, 0x0100, 0, 0x1C, 3,
                     bytes([0x00, 0x80, 0x03]), 2, 1, code_type, 0x80 if last else 0, 0, 0, 0)
    if code_type == 0:
        data[-1] = -sum(data) & 0xFF  # legacy images sum to zero
    return bytes(data)

with open(sys.argv[1], "wb") as rom:
    rom.write(image(0, False) + image(3, True))
PY

# 4. The first boot: update-grub inside the VM, then poweroff ends QEMU.
step "first boot (update-grub in the VM, at most ${firstboot_timeout}s)"
cp "$OVMF_VARS" "$work/vars.fd"
bounded "$firstboot_timeout" qemu-system-x86_64 -accel tcg -cpu max -machine q35 -smp 2 -m 1024 \
  -nodefaults -display none -no-reboot -serial "file:$work/firstboot.log" \
  -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE" \
  -drive "if=pflash,format=raw,file=$work/vars.fd" \
  -drive "if=none,id=root,format=raw,file=$out/root.img" -device virtio-blk-pci,drive=root,bootindex=1 \
  -drive "if=none,id=esp,format=raw,file=$out/esp.img" -device virtio-blk-pci,drive=esp,bootindex=0 ||
  fail_log "$work/firstboot.log" "first boot failed or timed out"
grub_cfg=$(debugfs -R 'cat /boot/grub/grub.cfg' "$out/root.img" 2>/dev/null)
if ! debugfs -R 'stat /var/lib/lab-firstboot.done' "$out/root.img" 2>/dev/null | grep -q '^Inode:' ||
  ! grep -q 'BEGIN /etc/grub.d/10_linux' <<<"$grub_cfg" || ! grep -q 'intel_iommu=on' <<<"$grub_cfg"; then
  fail_log "$work/firstboot.log" "update-grub did not run in the first boot"
fi
e2fsck -fn "$out/root.img" >/dev/null 2>&1 || lab_die "root.img fails e2fsck after the first boot"

# 5. Into place: the recipe hash goes in last, so only a finished image is up to date.
echo "$recipe" >"$out/recipe.sha256"
rm -rf "$IMAGE_DIR.old"
if [ -d "$IMAGE_DIR" ]; then mv "$IMAGE_DIR" "$IMAGE_DIR.old"; fi
mv "$out" "$IMAGE_DIR"
rm -rf "$IMAGE_DIR.old"
lab_log "lab image built in $((SECONDS - start))s: $IMAGE_DIR ($(du -sh "$IMAGE_DIR" | cut -f1) on disk)"
