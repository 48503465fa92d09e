#!/usr/bin/env bash
# make demo: boot the lab VM, run site.yml against it, print the readiness summary, stop the VM.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'bash tests/lab/stop.sh' EXIT
bash tests/lab/start.sh
.venv/bin/ansible-playbook -i inventory/lab.yml site.yml
