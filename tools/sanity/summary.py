"""Summarize ansible-test's JUnit results (used by tools/sanity.sh).

Usage: summary.py JUNIT_DIR REQUIRED_TEST...

Prints which sanity tests passed, failed, had nothing to check, or were skipped and why.
Exits 1 if a test failed, was skipped for a reason other than "no files to check" (a missing
tool, interpreter or venv support would otherwise pass unnoticed), or if a REQUIRED_TEST did
not run (e.g. shellcheck, which ansible-test skips when the tool is missing).
"""

from __future__ import annotations

import glob
import os
import sys
import xml.etree.ElementTree as ET

NO_TARGETS = 'No tests applicable.'


def main() -> int:
    """Print the summary and return the exit status."""
    junit_dir, required = sys.argv[1], sys.argv[2:]
    passed, failed, empty, skipped = [], [], [], []

    for path in sorted(glob.glob(os.path.join(junit_dir, 'ansible-test-sanity-*.xml'))):
        for case in ET.parse(path).iter('testcase'):
            name = case.get('name')
            failure = case.find('failure')
            if failure is None:
                failure = case.find('error')
            skip = case.find('skipped')

            if failure is not None:
                failed.append(name)
            elif skip is not None and (skip.text or '').strip() == NO_TARGETS:
                empty.append(name)
            elif skip is not None:
                skipped.append(f'{name} ({(skip.text or skip.get("message") or "no reason").strip()})')
            else:
                passed.append(name)

    print(f'sanity: passed ({len(passed)}): {" ".join(passed) or "-"}')
    print(f'sanity: nothing to check ({len(empty)}): {" ".join(empty) or "-"}')
    print(f'sanity: skipped ({len(skipped)}): {"; ".join(skipped) or "-"}')
    print(f'sanity: failed ({len(failed)}): {" ".join(failed) or "-"}')

    ran = {name.split('-python-')[0] for name in passed + failed}
    missing = [test for test in required if test not in ran]

    if missing:
        print(f'sanity: required tests that did not run: {" ".join(missing)}')

    if not passed + failed + empty + skipped:
        print(f'sanity: no results in {junit_dir}')
        return 1

    return 1 if failed or skipped or missing else 0


if __name__ == '__main__':
    sys.exit(main())
