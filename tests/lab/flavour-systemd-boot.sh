# The systemd-boot flavour of the lab image (sourced by build-image.sh, which defines tree, work,
# out, uuid, kernel, kver, esp_id, step, in_tree and fail_log): Debian 12's systemd-boot with the kernel
# command line in /etc/kernel/cmdline. The ESP is laid out by the real tools, run in the tree at
# build time as the systemd-boot package's postinst runs them on a host: `bootctl install` (the
# loader, loader.conf, entries.srel, the entry-token directory) and `kernel-install add`, which
# copies the kernel and initrd to <ESP>/<machine-id>/<version>/ and writes the loader entry with
# /etc/kernel/cmdline as its options. That is copied into a FAT image with mtools: no first boot
# is needed. In the VM the ESP (/dev/vdb1) is mounted on /boot/efi, so editing /etc/kernel/cmdline, then
# `kernel-install add "$(uname -r)" "/boot/vmlinuz-$(uname -r)"` and a reboot change /proc/cmdline.
# shellcheck shell=bash disable=SC2154,SC2034  # variables shared with build-image.sh

flavour_install=(systemd-boot systemd-boot-efi)
# The shared base has GRUB's packages; a systemd-boot host has none (and no update-grub to find).
flavour_purge=(grub-efi-amd64-bin grub2-common grub-common)
flavour_tools=(sfdisk)
# Room for two kernel versions with their initrds (kernel-install keeps a directory per version)
# or a dracut initrd, which is larger than initramfs-tools'. The image file stays sparse.
esp_kib=524288

flavour_configure() {
  # What a module edits: one line, the whole kernel command line (systemd-boot has no split like
  # GRUB_CMDLINE_LINUX / _DEFAULT). The IOMMU argument last, as in the grub flavour's /proc/cmdline;
  # no_timer_check and panic=10 for the reasons given in flavour-grub.sh.
  echo "root=UUID=$uuid ro console=ttyS0,115200 no_timer_check panic=10 intel_iommu=on" >"$tree/etc/kernel/cmdline"
  # bootctl wants the ESP to be the root of a file system (relaxed, not necessarily FAT), so the
  # tools write to a tmpfs mounted on /boot/efi in in_tree's private mount namespace; that is
  # copied to the tree's /var/tmp/lab-esp before the namespace ends, and from there into the FAT
  # image by flavour_esp. No EFI variables are written: OVMF boots the removable-media path
  # EFI/BOOT/BOOTX64.EFI, which bootctl installs too.
  in_tree "bootctl install and kernel-install add $kver" <<EOF
export SYSTEMD_RELAX_ESP_CHECKS=1
mount -t tmpfs -o mode=0700 lab-esp /boot/efi
bootctl install --esp-path=/boot/efi --no-variables --make-machine-id-directory=yes
kernel-install --verbose add $kver /boot/$kernel
rm -rf /var/tmp/lab-esp
cp -a /boot/efi /var/tmp/lab-esp
EOF
}

flavour_esp() {
  step "ESP (GPT partition 1) from what bootctl and kernel-install wrote"
  # Unlike GRUB, bootctl (is-installed, status, and so the kernel postinst hook) only accepts an
  # ESP that is a partition of the EFI System type, as on a real host: so this disk has a GPT
  # whose partition 1 starts at 1 MiB, and the FAT file system is made and filled at that offset.
  truncate -s $(((esp_kib + 2048) * 1024)) "$out/esp.img"
  sfdisk -q "$out/esp.img" <<EOF >/dev/null
label: gpt
start=2048, size=$((esp_kib * 2)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI System Partition"
EOF
  # It warns that the file is larger than the file system (the GPT around it): expected.
  mkfs.vfat -F 32 -n LABESP -i "$esp_id" --offset=2048 "$out/esp.img" "$esp_kib" >"$work/mkfs.vfat.log" 2>&1 ||
    fail_log "$work/mkfs.vfat.log" "mkfs.vfat failed"
  mcopy -s -p -i "$out/esp.img@@1M" "$tree"/var/tmp/lab-esp/* ::/
  rm -rf "$tree/var/tmp/lab-esp"
}

flavour_finish() {
  local machine_id entry
  machine_id=$(cat "$tree/etc/machine-id")
  entry=$(mtype -i "$out/esp.img@@1M" "::/loader/entries/$machine_id-$kver.conf" 2>/dev/null) ||
    lab_die "no loader entry $machine_id-$kver.conf on the ESP"
  grep -q "^options .*intel_iommu=on" <<<"$entry" || lab_die "the loader entry has no intel_iommu=on: $entry"
  mdir -i "$out/esp.img@@1M" "::/$machine_id/$kver" 2>/dev/null | grep -q initrd ||
    lab_die "kernel-install put no initrd on the ESP"
  mdir -i "$out/esp.img@@1M" ::/EFI/BOOT 2>/dev/null | grep -qi bootx64 || lab_die "no EFI/BOOT/BOOTX64.EFI on the ESP"
}
