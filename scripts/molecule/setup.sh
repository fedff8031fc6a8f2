#!/usr/bin/env bash
# Prepare this machine to run the Molecule scenarios (as root, idempotent, quick when done before):
#   - the host tools podman needs (Debian packages; scripts/bootstrap.sh test installs them too)
#   - podman config + storage of our own under $OPENVIF_MOLECULE_BASE (never the host's default store)
#   - containers.podman (molecule's podman driver needs it) from the PyPI `ansible` wheel
#   - the container image (build-image.sh; cached as a tarball)
# Network: Debian's apt mirror and PyPI only, and only when something is missing.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"
ROOT=$MOLECULE_ROOT_DIR

log() { printf 'molecule-setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (podman runs rootful here, debootstrap needs root)"
mkdir -p "$BASE"
# One setup at a time (pytest and a shell may race); a second caller waits, then finds it done.
exec 9>"$BASE/setup.lock"
flock -w 900 9 || die "another setup.sh holds $BASE/setup.lock for more than 15 minutes"
[ -x "$ROOT/.venv/bin/molecule" ] || die "$ROOT/.venv has no molecule: run scripts/bootstrap.sh test first"
[ -e "$ROOT/.cache/collections/ansible_collections/openvif/vswitch" ] ||
  die "the collection link .cache/collections/ansible_collections/openvif/vswitch is missing: run scripts/bootstrap.sh test"

# --- host packages --------------------------------------------------------------------------
# runc: Debian's crun 1.8 refuses this host kind's hybrid cgroup v1/v2 layout.
PKGS=(podman runc debootstrap iptables uidmap)
missing=()
for pkg in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- podman config --------------------------------------------------------------------------
# ulimits: rootful podman raises nofile/nproc to ~1M by default; without CAP_SYS_RESOURCE and
# with lower host hard limits the runtime fails with "setrlimit RLIMIT_NOFILE: Operation not
# permitted". Stay within what this shell may set.
cap() { local hard=$1 want=$2; if [ "$hard" = unlimited ] || [ "$hard" -gt "$want" ]; then echo "$want"; else echo "$hard"; fi; }
NOFILE=$(cap "$(ulimit -Hn)" 65536)
NPROC=$(cap "$(ulimit -Hu)" 32768)
mkdir -p "$BASE/etc" "$BASE/storage/graph" "$BASE/storage/run" "$BASE/storage/tmp" "$BASE/collections" \
         "$ANSIBLE_HOME" "$BASE/ansible-tmp" "$XDG_CACHE_HOME" "$BASE/build" "$BASE/logs"
write_if_changed() {  # path: content on stdin; rewrite only when it differs (keeps reruns no-ops)
  local tmp; tmp=$(mktemp "$1.XXXXXX"); cat >"$tmp"
  if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; log "wrote $1"; fi
}
write_if_changed "$CONTAINERS_CONF" <<CONF
# Written by scripts/molecule/setup.sh: podman settings for the Molecule scenarios only.
[containers]
# Within the host's hard limits (nofile $(ulimit -Hn), nproc $(ulimit -Hu)); podman's rootful
# default (~1M) cannot be set without CAP_SYS_RESOURCE.
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]

[engine]
# crun 1.8 rejects hybrid cgroup v1/v2 hosts ("cgroups in hybrid mode not supported").
runtime = "runc"
# No systemd on the host to delegate cgroups to.
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$BASE/storage/tmp"
CONF
write_if_changed "$CONTAINERS_STORAGE_CONF" <<CONF
# Written by scripts/molecule/setup.sh: a store of our own, apart from the host's default one.
[storage]
driver = "overlay"
graphroot = "$BASE/storage/graph"
runroot = "$BASE/storage/run"
CONF

# --- containers.podman ----------------------------------------------------------------------
COLL=$BASE/collections/ansible_collections/containers/podman
if [ ! -f "$COLL/MANIFEST.json" ]; then
  log "fetching containers.podman from the PyPI 'ansible' $OPENVIF_ANSIBLE_WHEEL_VERSION wheel (Galaxy is unreachable)"
  dl=$BASE/build/wheels
  mkdir -p "$dl"
  "$ROOT/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$dl" "ansible==$OPENVIF_ANSIBLE_WHEEL_VERSION"
  rm -rf "$COLL" "$COLL.partial"
  "$ROOT/.venv/bin/python" - "$dl/ansible-$OPENVIF_ANSIBLE_WHEEL_VERSION-py3-none-any.whl" "$COLL.partial" <<'PY'
import sys, zipfile
from pathlib import Path
wheel, dest = sys.argv[1], Path(sys.argv[2])
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix) and not n.endswith("/")]
    if not names:
        sys.exit(f"{wheel} holds no {prefix}")
    for name in names:
        target = dest / name[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(z.read(name))
PY
  mv "$COLL.partial" "$COLL"
  rm -f "$dl"/ansible-*.whl   # 50 MB; only the 1 MB collection is kept
fi

# --- image ----------------------------------------------------------------------------------
"$HERE/build-image.sh"
# shellcheck disable=SC2209  # "nm" names the variant (NetworkManager), it is not the nm command
OPENVIF_MOLECULE_VARIANT=nm "$HERE/build-image.sh"   # the boot scenario's NetworkManager host
OPENVIF_MOLECULE_VARIANT=dhcp "$HERE/build-image.sh"   # the dhcp scenario's hosts, with dnsmasq
OPENVIF_MOLECULE_VARIANT=dhcp-nm "$HERE/build-image.sh"   # and its NetworkManager host

podman info --format '{{.Host.OCIRuntime.Name}} {{.Store.GraphRoot}}' >/dev/null ||
  die "podman does not start with $CONTAINERS_CONF"
log "ready: image $OPENVIF_MOLECULE_IMAGE, state in $BASE"
