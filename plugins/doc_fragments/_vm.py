# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Documents module_utils._vsphere.vm_argument_spec() (with VM_ONE_OF for the module's checks).
    DOCUMENTATION = r"""
options:
  vm_name:
    description:
      - Name of the VM. A name that several VMs share is refused; use O(vm_uuid) then.
      - One of O(vm_name) and O(vm_uuid) is required.
    type: str
  vm_uuid:
    description:
      - BIOS UUID of the VM (C(config.uuid)). A UUID that several VMs share (clones) is refused.
    type: str
"""
