"""Offline stand-in for ansible-test's get-pip script, built on Python's bundled ensurepip wheel.

ansible-test bootstraps pip into each empty virtual environment it creates (python -m venv
--without-pip) by running ~/.ansible/test/cache/get_pip_<X_Y>.py, which it downloads once from
https://ci-files.testing.ansible.com/ansible-test/get-pip-<X.Y>.py. That host is not reachable
here, so tools/sanity.sh puts a copy of this file at that cache path before ansible-test runs.

ansible-test runs it like the real get-pip.py (through its quiet_pip.py wrapper, with
sys.executable being the new venv's python):

    python get_pip_24_2.py --disable-pip-version-check pip==24.2 --no-setuptools --no-wheel

Like get-pip.py this runs `pip install --upgrade --force-reinstall <args>`, except that pip itself
is imported from the pip wheel that ships with the interpreter for ensurepip (the way ensurepip
does it), instead of from a zip embedded in the script. The requested pip==<X.Y> then comes from
the configured package index (PyPI). If the interpreter has no bundled wheel (a distribution
that strips it), ensurepip.bootstrap() installs pip first and that pip does the same install.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

# get-pip.py options that tell it not to add setuptools / wheel to the packages it installs;
# they are not pip options. This script never adds those packages, so they are dropped.
GET_PIP_ONLY_OPTIONS = ('--no-setuptools', '--no-wheel')


def bundled_pip_wheel() -> str | None:
    """Return the path of the pip wheel bundled for ensurepip, or None."""
    import ensurepip

    directories = [
        os.path.join(os.path.dirname(ensurepip.__file__), '_bundled'),
        '/usr/share/python-wheels',  # Debian/Ubuntu system Pythons keep it here
    ]

    for directory in directories:
        wheels = sorted(glob.glob(os.path.join(directory, 'pip-*.whl')))

        if wheels:
            return wheels[-1]

    return None


def main() -> int:
    """Install the requested packages with a pip taken from ensurepip."""
    pip_args = ['install', '--upgrade', '--force-reinstall']
    pip_args += [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY_OPTIONS]

    wheel = bundled_pip_wheel()

    if wheel:
        sys.path.insert(0, wheel)

        from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

        return pip_main(pip_args)

    import ensurepip

    ensurepip.bootstrap(upgrade=True)

    return subprocess.call([sys.executable, '-m', 'pip'] + pip_args)


if __name__ == '__main__':
    sys.exit(main())
