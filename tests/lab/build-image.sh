#!/usr/bin/env bash
# Build a lab VM image: Debian 12 on UEFI, from Debian packages only, with no mount or loop
# device for the image (debootstrap, files written into the tree, mkfs.ext4 -d, a FAT ESP made
# with mtools). What differs per boot loader lives in flavour-$LAB_FLAVOUR.sh: grub (GRUB +
# update-grub in a first boot of the image) or systemd-boot (bootctl + kernel-install with
# /etc/kernel/cmdline). Both flavours share the debootstrapped base tarball and the .deb cache,
# and carry dracut's .debs (not installed) in /var/cache/lab-debs/dracut/ and an offline apt
# repository, the only source apt sees, with libvirt/QEMU/OVMF in /var/cache/lab-debs/repo/. An
# image is rebuilt only when its recipe (this file, lib.sh, its flavour file, the key, the mirror)
# changes.
#
# Environment: LAB_CACHE (default .cache/lab), LAB_FLAVOUR (grub | systemd-boot), LAB_MIRROR
# (Debian mirror), LAB_FIRSTBOOT_TIMEOUT (seconds for a first boot, default 900).
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
source "$(dirname "$0")/lib.sh"
flavour_file=$LAB_DIR/flavour-$LAB_FLAVOUR.sh
# What a flavour file may set (besides its flavour_configure, flavour_esp and flavour_finish).
flavour_install=() flavour_purge=() flavour_tools=()
# shellcheck source=tests/lab/flavour-grub.sh
source "$flavour_file"

start=$SECONDS
mirror=${LAB_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# In the offline repository (/var/cache/lab-debs/repo), not installed: what kvm_host installs, and
# python3-apt, which ansible.builtin.apt installs for itself when it is missing.
repo_packages="qemu-system-x86 libvirt-daemon-system libvirt-clients ovmf python3-libvirt python3-lxml python3-apt"
packages=linux-image-amd64,initramfs-tools,systemd-sysv,udev,kmod,dbus,openssh-server,python3,pciutils,iproute2,procps,netbase,grub-efi-amd64-bin,grub2-common
root_size=3G
firstboot_timeout=${LAB_FIRSTBOOT_TIMEOUT:-900}

for tool in debootstrap mkfs.ext4 debugfs mkfs.vfat mmd mcopy mtype mdir qemu-system-x86_64 ssh-keygen "${flavour_tools[@]}"; do
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
  cat "$LAB_DIR/build-image.sh" "$LAB_DIR/lib.sh" "$flavour_file" "$LAB_KEY.pub"
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
# Boots the images once (no network, no devices but the disks); the guest ends it by powering off.
first_boot() {
  step "first boot ($1, at most ${firstboot_timeout}s)"
  cp "$OVMF_VARS" "$work/vars.fd"
  bounded "$firstboot_timeout" qemu-system-x86_64 -accel tcg -cpu max -machine q35 -smp 2 -m 1024 \
    -nodefaults -display none -no-reboot -serial "file:$work/firstboot.log" \
    -drive "if=pflash,format=raw,readonly=on,file=$OVMF_CODE" \
    -drive "if=pflash,format=raw,file=$work/vars.fd" \
    -drive "if=none,id=root,format=raw,file=$out/root.img" -device virtio-blk-pci,drive=root,bootindex=1 \
    -drive "if=none,id=esp,format=raw,file=$out/esp.img" -device virtio-blk-pci,drive=esp,bootindex=0 ||
    fail_log "$work/firstboot.log" "first boot failed or timed out"
}

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

# Runs a script (stdin) as root in the tree, with /proc mounted in a private mount namespace that
# vanishes with it, like debootstrap's; the output goes to $work/in-tree.log.
in_tree() {
  local what=$1
  step "in the tree: $what"
  cat >"$tree/tmp/lab-step.sh"
  # shellcheck disable=SC2016  # $1 is expanded by that sh
  bounded 1800 unshare --mount --propagation private -- \
    sh -c 'mount -t proc proc "$1/proc" && exec chroot "$1" /bin/bash -euo pipefail /tmp/lab-step.sh' sh "$tree" \
    >>"$work/in-tree.log" 2>&1 || fail_log "$work/in-tree.log" "in the tree: $what failed"
  rm -f "$tree/tmp/lab-step.sh"
}

# 2. Packages on top of the shared base, by apt in the tree (with the lists debootstrap left, the
#    host's DNS, and debs/ as apt's archive, so a rebuild downloads nothing it already has): the
#    flavour's own, and dracut's .debs with whatever they need that the image lacks, downloaded
#    only: dracut conflicts with initramfs-tools (the default), and tests install it offline.
cp /etc/resolv.conf "$tree/etc/resolv.conf"   # replaced by QEMU's below
find "$LAB_CACHE/debs" -maxdepth 1 -name '*.deb' -exec cp -l -t "$tree/var/cache/apt/archives/" {} +
in_tree "apt: install '${flavour_install[*]}', purge '${flavour_purge[*]}', download dracut and $repo_packages" <<EOF
export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -q -y -o APT::Sandbox::User=root --no-install-recommends "\$@"; }
if [ -n "${flavour_purge[*]}" ]; then apt_get purge ${flavour_purge[*]}; fi
if [ -n "${flavour_install[*]}" ]; then apt_get install ${flavour_install[*]}; fi
mkdir -p /var/cache/lab-debs/dracut
apt_get install --download-only dracut
# The packages an offline install would add (epochs' colons are %3a in .deb names).
apt_get install -s dracut | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p' |
  while read -r name version; do
    cp -l /var/cache/apt/archives/"\${name}_\${version//:/%3a}"_*.deb /var/cache/lab-debs/dracut/
  done
ls /var/cache/lab-debs/dracut/dracut_*.deb /var/cache/lab-debs/dracut/dracut-core_*.deb
# The offline apt repository: the hypervisor packages (and what they need that the image lacks),
# downloaded only, with a Packages index by apt-ftparchive (apt-utils, installed for that).
apt_get install apt-utils
mkdir -p /var/cache/lab-debs/repo
apt_get install --download-only $repo_packages
apt_get install -s $repo_packages | sed -n 's/^Inst \([^ ]*\) (\([^ ]*\) .*/\1 \2/p' |
  while read -r name version; do
    cp -l /var/cache/apt/archives/"\${name}_\${version//:/%3a}"_*.deb /var/cache/lab-debs/repo/
  done
cd /var/cache/lab-debs/repo
apt-ftparchive packages . >Packages
# apt in the VM sees this repository only: the mirror is unreachable from there, and an
# unreachable source makes apt-get update fail. Its lists are made now, so an install works
# even before an update.
rm -f /etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/var/cache/lab-debs/repo ./' >/etc/apt/sources.list
rm -rf /var/lib/apt/lists/*
apt_get update
apt_get install -s $repo_packages >/dev/null
# A throw-away VM under TCG: dpkg without an fsync per file installs the stack in far less time.
echo force-unsafe-io >/etc/dpkg/dpkg.cfg.d/lab-unsafe-io
EOF
find "$tree/var/cache/apt/archives" -maxdepth 1 -name '*.deb' -exec cp -ln -t "$LAB_CACHE/debs/" {} +
rm -f "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/apt/*.bin

# 3. Configuration, written straight into the tree.
step "configuring the tree"
uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=1AB2C3D4   # FAT volume id: udev names the ESP by-uuid/1AB2-C3D4 (upper case)
kernel=$(cd "$tree/boot" && ls vmlinuz-*)
kver=${kernel#vmlinuz-}
initrd=initrd.img-$kver
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

flavour_configure

# Rebuilt initramfs inside the VM hold the modules this machine needs, not "most": under TCG,
# update-initramfs took 54 s with dep and over 11 min with most (29 min on a loaded host). Set
# after the tree's own initrd is built, since dep in a chroot would size it for the build host.
sed -i 's/^MODULES=.*/MODULES=dep/' "$tree/etc/initramfs-tools/initramfs.conf"
grep -qx 'MODULES=dep' "$tree/etc/initramfs-tools/initramfs.conf" || lab_die "MODULES=dep not set"

# 4. The images: the ESP first (a flavour may move files from the tree onto it), then the root.
flavour_esp
step "mkfs.ext4 -d ($root_size sparse)"
mkfs.ext4 -q -F -L labroot -U "$uuid" -d "$tree" "$out/root.img" "$root_size" >/dev/null
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

# 5. What the flavour still does on the images (a first boot) and checks.
flavour_finish

# 6. Into place: the recipe hash goes in last, so only a finished image is up to date.
echo "$recipe" >"$out/recipe.sha256"
rm -rf "$IMAGE_DIR.old"
if [ -d "$IMAGE_DIR" ]; then mv "$IMAGE_DIR" "$IMAGE_DIR.old"; fi
mv "$out" "$IMAGE_DIR"
rm -rf "$IMAGE_DIR.old"
lab_log "lab image built in $((SECONDS - start))s: $IMAGE_DIR ($(du -sh "$IMAGE_DIR" | cut -f1) on disk)"
