#!/usr/bin/env bash
# Build vcsim-gpu (govmomi's vSphere simulator with the GPU passthrough extension) into
# .cache/vcsim/bin/. Needs only Debian's golang-go and golang-github-vmware-govmomi-dev (installed
# by tools/bootstrap.sh) and no network: GOPATH mode against the packaged sources.
# Idempotent: skips the build while a stamp holds the hash of the sources, this script, the Go
# version and the govmomi package version. Prints the binary's path on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=$repo/.cache/vcsim
bin=$out/bin/vcsim-gpu
stamp=$bin.stamp
gocode=/usr/share/gocode

die() { echo "vcsim build: $*" >&2; exit 1; }
command -v go >/dev/null || die "go is not installed (apt-get install golang-go golang-github-vmware-govmomi-dev, or run tools/bootstrap.sh)"
[ -d "$gocode/src/github.com/vmware/govmomi/simulator" ] ||
  die "govmomi sources are missing under $gocode (apt-get install golang-github-vmware-govmomi-dev)"

mkdir -p "$out/bin"
# One build at a time (parallel test runs share the output).
exec 9>"$out/build.lock"
flock 9

govmomi_version=$(dpkg-query -W -f='${Version}' golang-github-vmware-govmomi-dev 2>/dev/null || echo unknown)
hash=$(
  cd "$here"
  {
    for f in *.go build.sh; do printf '%s\n' "$f"; cat "$f"; done
    go version
    echo "govmomi $govmomi_version"
  } | sha256sum | cut -d' ' -f1
)
if [ -x "$bin" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
  echo "vcsim build: up to date"
  echo "$bin"
  exit 0
fi

echo "vcsim build: building $bin"
start=$SECONDS
# GOENV=off and GOFLAGS='' keep a user's go env file or -mod flags out: they break GOPATH mode.
(
  cd "$here"
  env GOENV=off GOFLAGS='' GO111MODULE=off GOPATH="$gocode" GOPROXY=off GOCACHE="$out/go-build" \
    go build -trimpath -ldflags='-s -w' -o "$bin.tmp" .
)
mv -f "$bin.tmp" "$bin"
echo "$hash" >"$stamp"
echo "vcsim build: done in $((SECONDS - start)) s"
echo "$bin"
