#!/usr/bin/env bash
# Shared settings of the lab scripts; sourced by them, not run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
LAB_CACHE=${LAB_CACHE:-$REPO_DIR/.cache/lab}
mkdir -p "$LAB_CACHE"
LAB_CACHE=$(cd "$LAB_CACHE" && pwd)
LAB_FLAVOUR=${LAB_FLAVOUR:-grub}
LAB_KEY=$LAB_CACHE/id_ed25519
IMAGE_DIR=$LAB_CACHE/image-$LAB_FLAVOUR
# One running VM per run dir; tests give each VM its own (LAB_RUN_DIR) so they never share one.
RUN_DIR=${LAB_RUN_DIR:-$LAB_CACHE/run}
PIDFILE=$RUN_DIR/qemu.pid
OVMF_CODE=/usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS=/usr/share/OVMF/OVMF_VARS_4M.fd

# The boot loader of the image; each has its part of the recipe in flavour-<name>.sh.
case "$LAB_FLAVOUR" in
  grub | systemd-boot) ;;
  *) echo "lab: unknown LAB_FLAVOUR '$LAB_FLAVOUR' (known: grub, systemd-boot)" >&2; exit 2 ;;
esac

lab_log() { echo "lab: $*" >&2; }
lab_die() { echo "lab: ERROR: $*" >&2; exit 1; }

# The port of the running VM wins over the environment, so ssh.sh and stop.sh reach the VM
# that start.sh started whatever LAB_SSH_PORT says now.
lab_port() {
  if [ -s "$RUN_DIR/ssh_port" ] && lab_running; then
    cat "$RUN_DIR/ssh_port"
  else
    echo "${LAB_SSH_PORT:-2222}"
  fi
}

# True when the pidfile names a live QEMU of this run dir (not a recycled pid).
lab_running() {
  local pid
  [ -s "$PIDFILE" ] || return 1
  pid=$(cat "$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$RUN_DIR/"
}

# The ssh command line for the VM, as an array (so `timeout` can run it): "${LAB_SSH[@]}" CMD
lab_ssh_init() {
  LAB_SSH=(
    ssh -i "$LAB_KEY" -p "$(lab_port)"
    -o BatchMode=yes -o IdentitiesOnly=yes -o ConnectTimeout=30
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null
    -o LogLevel=ERROR -o ServerAliveInterval=10 -o ServerAliveCountMax=6
    root@127.0.0.1
  )
}
