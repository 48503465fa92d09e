#!/usr/bin/env bash
# Run a command as root in the lab VM: tests/lab/ssh.sh lspci -vvnn
# No known_hosts is read or written (each start is a fresh copy of the image).
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
source "$(dirname "$0")/lib.sh"

[ -s "$LAB_KEY" ] || lab_die "no lab key $LAB_KEY: run tests/lab/build-image.sh"
lab_ssh_init
exec "${LAB_SSH[@]}" "$@"
