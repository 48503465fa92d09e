#!/usr/bin/env bash
# Install what `make test` and `make demo` need: Debian packages (only the missing
# ones) and a Python venv in .venv. Safe to run again; fetches nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  qemu-system-x86 qemu-utils ovmf debootstrap e2fsprogs dosfstools mtools fdisk
  grub-efi-amd64-bin openssh-client pciutils shellcheck
  golang-go golang-github-vmware-govmomi-dev
  # the readiness report's test renders its HTML page in headless Chromium
  chromium
)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q -r tests/requirements.txt
