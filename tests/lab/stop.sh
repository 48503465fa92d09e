#!/usr/bin/env bash
# Stop the lab VM: poweroff over ssh, then SIGTERM, then SIGKILL, each with a bounded wait; then
# drop the run dir's disk copies. Exits 0 when nothing runs, so traps can always call it.
#
# Environment: LAB_STOP_TIMEOUT (seconds for the guest's poweroff, default 60), LAB_CACHE.
set -euo pipefail
# shellcheck source=tests/lab/lib.sh
source "$(dirname "$0")/lib.sh"

stop_timeout=${LAB_STOP_TIMEOUT:-60}

wait_gone() {
  local deadline=$((SECONDS + $1))
  while [ "$SECONDS" -lt "$deadline" ]; do
    lab_running || return 0
    sleep 1
  done
  ! lab_running
}

if lab_running; then
  start=$SECONDS
  pid=$(cat "$PIDFILE")
  lab_ssh_init
  # A guest that does not answer ssh (still booting, or broken) goes straight to SIGTERM.
  if timeout 20 "${LAB_SSH[@]}" true </dev/null >/dev/null 2>&1; then
    timeout 20 "${LAB_SSH[@]}" 'systemctl poweroff' </dev/null >/dev/null 2>&1 || true
    why="did not power off in ${stop_timeout}s"
  else
    stop_timeout=0
    why="does not answer ssh"
  fi
  if wait_gone "$stop_timeout"; then
    lab_log "lab VM powered off in $((SECONDS - start))s"
  else
    lab_log "lab VM $why: SIGTERM to QEMU $pid"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone 15; then
      lab_log "QEMU $pid still there: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 10 || lab_die "QEMU $pid survived SIGKILL"
    fi
  fi
fi
# The serial log stays for a look after the fact; start.sh truncates it.
rm -f "$PIDFILE" "$RUN_DIR/root.qcow2" "$RUN_DIR/esp.img" "$RUN_DIR/OVMF_VARS.fd" \
  "$RUN_DIR/ssh_port" "$RUN_DIR/instance"
