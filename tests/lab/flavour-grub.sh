# The grub flavour of the lab image (sourced by build-image.sh, which defines tree, work, out,
# uuid, kernel, initrd, esp_id, esp_kib, step, bounded, first_boot, fail_log): GRUB on UEFI.
# A grub-mkstandalone BOOTX64.EFI on the ESP loads the root disk's /boot/grub/grub.cfg, which
# update-grub writes in a first boot of the image; so editing /etc/default/grub, update-grub and a
# reboot change /proc/cmdline, as on a real host.
# shellcheck shell=bash disable=SC2154,SC2034  # variables shared with build-image.sh

flavour_install=()                 # grub-efi-amd64-bin and grub2-common are in the shared base
flavour_purge=()
flavour_tools=(grub-mkstandalone)
esp_kib=65536

flavour_configure() {
  # The marker the ESP's GRUB searches for to find this filesystem.
  echo "lab root filesystem $uuid" >"$tree/.lab-root"

  # /etc/default/grub as Debian ships it, with the lab's values: kernel args that modules may edit
  # go in GRUB_CMDLINE_LINUX_DEFAULT (no "quiet"), the serial console stays in GRUB_CMDLINE_LINUX.
  # no_timer_check: under TCG on a loaded host the kernel's IO-APIC timer check through interrupt
  # remapping can time out and panic ("timer doesn't work through Interrupt-remapped IO-APIC");
  # panic=10 reboots a VM that panics anyway instead of leaving it hung until the ssh timeout.
  cp "$tree/usr/share/grub/default/grub" "$tree/etc/default/grub"
  sed -i -e 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' \
    -e 's/^GRUB_CMDLINE_LINUX_DEFAULT=.*/GRUB_CMDLINE_LINUX_DEFAULT="intel_iommu=on"/' \
    -e 's/^GRUB_CMDLINE_LINUX=.*/GRUB_CMDLINE_LINUX="console=ttyS0,115200 no_timer_check panic=10"/' \
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
}

flavour_esp() {
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
}

flavour_finish() {
  # The first boot: update-grub inside the VM, then poweroff ends QEMU.
  first_boot "update-grub in the VM"
  local grub_cfg
  grub_cfg=$(debugfs -R 'cat /boot/grub/grub.cfg' "$out/root.img" 2>/dev/null)
  if ! debugfs -R 'stat /var/lib/lab-firstboot.done' "$out/root.img" 2>/dev/null | grep -q '^Inode:' ||
    ! grep -q 'BEGIN /etc/grub.d/10_linux' <<<"$grub_cfg" || ! grep -q 'intel_iommu=on' <<<"$grub_cfg"; then
    fail_log "$work/firstboot.log" "update-grub did not run in the first boot"
  fi
  e2fsck -fn "$out/root.img" >/dev/null 2>&1 || lab_die "root.img fails e2fsck after the first boot"
}
