# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Shared argument specs. root and bootloader each have a doc fragment of the same name; the option
sets after them are documented in each module that takes them (the same names, types and defaults)."""

from __future__ import absolute_import, division, print_function

import os

__metaclass__ = type


def root_is_live(root):
    """Whether ``root`` is this host's own ``/``: only then may modules touch the running kernel."""
    return os.path.realpath(root or "/") == "/"


def root_argument_spec():
    """Documented by the C(passthrough.gpu._root) doc fragment."""
    return {"root": {"type": "path", "default": "/"}}


def bootloader_argument_spec():
    """Documented by the C(passthrough.gpu._bootloader) doc fragment."""
    return {"bootloader": {"type": "str", "default": "auto",
                           "choices": ["auto", "grub", "systemd_boot", "proxmox_boot_tool", "grubby", "kernelstub"]}}


def hugepages_options():
    """The huge page options of hugepages and of host_config's hugepages (same names and defaults)."""
    return {
        "size": {"type": "str", "choices": ["2M", "1G"], "default": "2M"},
        "count": {"type": "int"},
        "memory": {"type": "str"},
        "nodes": {"type": "list", "elements": "int"},
        "runtime": {"type": "bool", "default": True},
        "persistent": {"type": "bool", "default": True},
    }


def vfio_options():
    """The binding options of vfio_bind and of host_config's vfio (same names and defaults)."""
    return {
        "devices": {"type": "list", "elements": "str", "required": True},
        "include_group": {"type": "bool", "default": True},
        "allow_shared_group": {"type": "bool", "default": False},
        "force": {"type": "bool", "default": False},
        "runtime": {"type": "bool", "default": True},
        "persistent": {"type": "bool", "default": True},
        "blacklist": {"type": "list", "elements": "str", "default": []},
        "initramfs": {"type": "str", "choices": ["auto", "initramfs-tools", "dracut", "mkinitcpio", "none"],
                      "default": "auto"},
    }
