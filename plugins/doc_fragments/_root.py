# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Documents module_utils._argspec.root_argument_spec().
    DOCUMENTATION = r"""
options:
  root:
    description:
      - Directory under which C(/sys), C(/proc), C(/etc) and C(/boot) are read (and, for modules
        that change things, written).
      - Leave at C(/) for the managed host itself. Point it at a copied tree to inspect another
        machine's state offline or in tests.
      - Actions on the running kernel (writes to sysfs, C(modprobe)) happen only when O(root=/).
    type: path
    default: /
"""
