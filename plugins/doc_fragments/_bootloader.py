# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Documents module_utils._argspec.bootloader_argument_spec().
    DOCUMENTATION = r"""
options:
  bootloader:
    description:
      - Where kernel arguments are configured, and how the boot configuration is regenerated.
      - V(auto) picks, most specific first, V(proxmox_boot_tool) (C(/etc/kernel/proxmox-boot-uuids)
        exists), V(kernelstub) (C(/etc/kernelstub/configuration)), V(grubby) (BLS entries in
        C(/boot/loader/entries) and C(grubby) installed), V(systemd_boot) (C(EFI/systemd/systemd-boot*.efi)
        on an ESP at C(/efi), C(/boot) or C(/boot/efi), with C(/etc/kernel/cmdline) or without
        C(/etc/default/grub)), then V(grub). It refuses to guess when systemd-boot and GRUB are both
        installed and C(/etc/kernel/cmdline) does not exist.
      - V(grub) edits C(/etc/default/grub) or the C(/etc/default/grub.d/*.cfg) drop-in holding the
        assignment that counts, then runs C(update-grub), else C(grub2-mkconfig -o /boot/grub2/grub.cfg),
        else C(grub-mkconfig -o /boot/grub/grub.cfg).
      - V(systemd_boot) edits C(/etc/kernel/cmdline) (created from C(/usr/lib/kernel/cmdline) or the
        running command line, as kernel-install would, when missing), then runs
        C(kernel-install add <version> <image>) for every kernel in C(/lib/modules).
      - V(proxmox_boot_tool) edits C(/etc/kernel/cmdline) when it exists (systemd-boot ESPs), else the
        GRUB defaults, then runs C(proxmox-boot-tool refresh).
      - V(grubby) reads C(grubby --info=ALL) and runs C(grubby --update-kernel=ALL --args=... --remove-args=...).
      - V(kernelstub) reads C(/etc/kernelstub/configuration) and runs C(kernelstub --delete-options)
        and C(--add-options).
      - V(grubby) and V(kernelstub) keep arguments where only they edit them, so they need O(root=/).
    type: str
    default: auto
    choices: [auto, grub, systemd_boot, proxmox_boot_tool, grubby, kernelstub]
"""
