#!/usr/bin/env bash
# Remove what the scenarios leave behind, and nothing else: containers in our own podman store
# ($OPENVIF_MOLECULE_BASE) that molecule made (label owner=molecule) for this project's scenarios
# (names openvif-*). The host's default podman store is never looked at.
#   scripts/molecule/cleanup.sh            containers only (image and caches kept: reruns stay fast)
#   RESET=1 scripts/molecule/cleanup.sh    also drop our image, store, caches and podman config
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"

[ -f "$CONTAINERS_CONF" ] || { echo "molecule-cleanup: nothing set up under $BASE"; exit 0; }
# Never pull containers from under a running scenario: wait for run.sh's lock of every release.
for lock in "$BASE"/run/*/run.lock; do
  [ -e "$lock" ] || continue
  exec {fd}>"$lock"   # kept open (and locked) until this script exits
  flock -w 1800 "$fd" || { echo "molecule-cleanup: a scenario still holds $lock" >&2; exit 1; }
done
mapfile -t ours < <(podman ps -a --filter label=owner=molecule --format '{{.Names}}' | grep '^openvif-' || true)
for name in "${ours[@]}"; do
  podman rm -f -t 5 "$name" >/dev/null && echo "molecule-cleanup: removed container $name"
done
# molecule's own record of those instances (every release's), so the next run starts with `create`.
rm -rf "$BASE"/run/*/cache/molecule "$BASE"/run/*/ansible-home/tmp/molecule.*
if [ "${RESET:-0}" = 1 ]; then
  podman rmi -f "$OPENVIF_MOLECULE_IMAGE" >/dev/null 2>&1 || true
  podman system reset -f >/dev/null 2>&1 || true   # our store only: CONTAINERS_* point at $BASE
  rm -rf "$BASE"   # the lock file goes too; fd 9 stays valid until we exit
  echo "molecule-cleanup: removed $BASE"
fi
