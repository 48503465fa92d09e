# -*- coding: utf-8 -*-
# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to this collection: not a public API, may change without notice.

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Modules that may change things: they fill in support for each attribute.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and predict the change without modifying the target.
  diff_mode:
    description: Returns what has changed (or would change in check mode) in diff mode.
  idempotent:
    description: A second run with the same arguments reports no change.
"""

    # Read-only modules that return ansible_facts.
    FACTS = r"""
options: {}
attributes:
  check_mode:
    description: Runs in check mode; it reads only, so the result is the same.
    support: full
  diff_mode:
    description: Nothing changes, so there is no diff.
    support: none
  facts:
    description: Returns an C(ansible_facts) dictionary that updates the host's facts.
    support: full
  idempotent:
    description: Reads only; never reports a change.
    support: full
"""
