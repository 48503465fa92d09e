# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.
"""What the CPU, the firmware and the distribution offer for passthrough, read under a root path.

Read by iommu_facts in the same module run as the groups, so the roles' preflight needs no
second module run (it used to be one ``grep`` over these files). Presence is the answer for
every file but cpuinfo: the ACPI tables are readable by root only, and existence needs no read.
"""

from __future__ import absolute_import, division, print_function

import os
import re

__metaclass__ = type

CPUINFO = "proc/cpuinfo"
EFI = "sys/firmware/efi/fw_platform_size"
FIRMWARE_TABLES = (("intel", "sys/firmware/acpi/tables/DMAR"), ("amd", "sys/firmware/acpi/tables/IVRS"))
VENDOR_RESET = "sys/module/vendor_reset/initstate"
# First match wins; the file names are the distributions' own markers.
FAMILIES = (("Debian", "etc/debian_version"), ("RedHat", "etc/redhat-release"), ("Archlinux", "etc/arch-release"))
# Only the flags lines: "vmx flags" lines of newer kernels list vmx features, not the flag itself.
VIRT_FLAG_RE = re.compile(r"^flags\s*:.*?\b(vmx|svm)\b", re.M)


def cpu_virtualization(text):
    """``vmx``, ``svm``, ``""`` when cpuinfo has neither flag, None when it could not be read."""
    if text is None:
        return None
    match = VIRT_FLAG_RE.search(text)
    return match.group(1) if match else ""


def read_platform(root):
    def there(rel):
        return os.path.exists(os.path.join(root, rel))

    try:
        with open(os.path.join(root, CPUINFO)) as handle:
            cpuinfo = handle.read()
    except (IOError, OSError):
        cpuinfo = None
    return {
        "cpu_virtualization": cpu_virtualization(cpuinfo),
        "uefi": there(EFI),
        "firmware_iommu": next((vendor for vendor, rel in FIRMWARE_TABLES if there(rel)), None),
        "vendor_reset_loaded": there(VENDOR_RESET),
        "os_family": next((family for family, rel in FAMILIES if there(rel)), None),
    }
