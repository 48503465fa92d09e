# Copyright: passthrough.gpu contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ansible-lint, production profile, on the whole repository (settings in .ansible-lint).

Offline: .ansible-lint says `offline: true`, and where the kernel allows it the run happens in a
network namespace with no network at all, so a lint that tried Galaxy would fail here, not hang.
"""

import os
import shutil
import subprocess

from helpers import BIN, REPO, ansible_env


def test_ansible_lint_production_profile_is_clean():
    argv = [os.path.join(BIN, "ansible-lint"), "--nocolor", "-f", "pep8"]
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True,
                                                  check=False).returncode == 0:
        argv = ["unshare", "-rn"] + argv
    proc = subprocess.run(argv, cwd=REPO, env=ansible_env(NO_COLOR="1"), capture_output=True, text=True,
                          timeout=900, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-12000:]
    assert "Profile 'production' was required, and it passed" in output, output[-4000:]
