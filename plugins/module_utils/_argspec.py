# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""Shared argument specs; each function has one doc fragment of the same name."""

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
