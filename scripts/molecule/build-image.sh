#!/usr/bin/env bash
# Build the scenarios' container image without any image registry: debootstrap a Debian release
# (minbase + what the scenarios use), tar it once, `podman import` it. The tarball and the image
# carry a hash of the package list, so a rerun is a no-op and a changed list rebuilds.
#   scripts/molecule/build-image.sh          bookworm (setup.sh calls it)
#   OPENVIF_MOLECULE_RELEASE=bullseye scripts/molecule/build-image.sh   another managed-host release
#                                            (run.sh calls it for the release it runs on)
#   REBUILD=1 scripts/molecule/build-image.sh   force a fresh debootstrap
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$HERE/env.sh"

log() { printf 'molecule-image: %s\n' "$*" >&2; }

SUITE=$OPENVIF_MOLECULE_RELEASE   # env.sh: bookworm unless the caller names another
# Variants add packages and get an image of their own (OPENVIF_MOLECULE_VARIANT=nm: NetworkManager,
# for the boot scenario's host whose network manager must leave the collection's interfaces alone;
# dhcp: dnsmasq, the DHCP server of the dhcp scenario's "physical network"; dhcp-nm: both, for that
# scenario's NetworkManager host).
VARIANT=${OPENVIF_MOLECULE_VARIANT:-}
IMAGE=$OPENVIF_MOLECULE_IMAGE${VARIANT:+-$VARIANT}   # localhost/openvif-molecule:<release>[-<variant>]
# What the scenarios need inside the container:
#   systemd, systemd-sysv, dbus    systemd as PID 1, systemctl
#   python3                        ansible modules
#   iproute2, iputils-ping, procps the verify steps (ip netns, veth, ping, ps)
#   tcpdump                        capture frames on a port when a check needs to see them
PKGS="python3,systemd,systemd-sysv,dbus,iproute2,iputils-ping,procps,tcpdump"
case "$VARIANT" in
  "") ;;
  nm) PKGS="$PKGS,network-manager,libpam-systemd" ;;   # libpam-systemd: the logind polkitd needs
  # dhcp: the dhcp scenario's DHCPv4/DHCPv6 server and router (dnsmasq, in a namespace), and the uplink's own
  # DHCP client of its networkd host (ISC dhclient, as ifupdown starts it)
  dhcp) PKGS="$PKGS,dnsmasq-base,isc-dhcp-client" ;;
  dhcp-nm) PKGS="$PKGS,dnsmasq-base,network-manager,libpam-systemd" ;;
  # libvirt: libvirtd and QEMU (TCG: no /dev/kvm in the container) for the libvirt scenario's domain.
  libvirt) PKGS="$PKGS,libvirt-daemon,libvirt-daemon-driver-qemu,libvirt-daemon-system,libvirt-clients,qemu-system-x86,libpam-systemd" ;;
  *) log "unknown image variant '$VARIANT' (known: nm, dhcp, dhcp-nm, libvirt)"; exit 1 ;;
esac
# pyroute2 for the kernel backend. Debian 12 (the machine's own release, whose python3-pyroute2
# 0.7.2 tests/integration/test_pyroute2_versions.py covers) gets the version the project pins, as a
# pure-Python wheel unpacked into the image (the container has no network). The other releases are
# there to prove managed hosts as they are: they get their distribution's own python3-pyroute2
# (Debian 11: 0.5.14, Debian 13: 0.7.7), installed by debootstrap like any package.
case "$SUITE" in
  bookworm)
    PYROUTE2=$(grep -h '^pyroute2==' "$MOLECULE_ROOT_DIR/requirements/test.txt" | head -1)
    PYROUTE2=${PYROUTE2:-pyroute2==0.9.7} ;;
  bullseye|trixie) PYROUTE2=debian; PKGS="$PKGS,python3-pyroute2" ;;
  *) log "unknown release '$SUITE' (known: bookworm, bullseye, trixie)"; exit 1 ;;
esac
MIRROR=${MIRROR:-$(grep -h '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
KEY=$(printf '%s\n' "$SUITE" "$PKGS" "$PYROUTE2" "v2" | sha256sum | cut -c1-12)
NAME=rootfs-${VARIANT:+$VARIANT-}$SUITE   # rootfs-bookworm-* never matches a variant's rootfs-nm-bookworm-*
TARBALL=$BASE/build/$NAME-$KEY.tar

mkdir -p "$BASE/build" "$BASE/logs"
# One build of a release at a time (scenarios on several releases may ask for their images at once).
exec 8>"$BASE/build/$NAME.lock"
flock -w 900 8 || { log "another build of $NAME holds $BASE/build/$NAME.lock"; exit 1; }
if [ ! -s "$TARBALL" ] || [ "${REBUILD:-0}" = 1 ]; then
  command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/molecule/setup.sh"; exit 1; }
  ROOTFS=$BASE/build/$NAME-$KEY
  rm -rf "$ROOTFS"
  mkdir -p "$BASE/build"
  t0=$(date +%s)
  log "debootstrap $SUITE from $MIRROR (about a minute)"
  debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOTFS" "$MIRROR" >"$BASE/logs/debootstrap-$NAME.log" 2>&1 ||
    { tail -n 30 "$BASE/logs/debootstrap-$NAME.log" >&2; log "debootstrap failed (log: $BASE/logs/debootstrap-$NAME.log)"; exit 1; }
  chroot "$ROOTFS" apt-get clean
  if [ "$PYROUTE2" != debian ]; then
    wheels=$BASE/build/wheels
    mkdir -p "$wheels"
    "$MOLECULE_ROOT_DIR/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$wheels" "$PYROUTE2"
    pyver=$(chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    wheel=("$wheels"/pyroute2-"${PYROUTE2#pyroute2==}"-*.whl)
    "$MOLECULE_ROOT_DIR/.venv/bin/python" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
      "${wheel[0]}" "$ROOTFS/usr/local/lib/python$pyver/dist-packages"
  fi
  chroot "$ROOTFS" python3 -c 'import sys, pyroute2, importlib.metadata as m
print("python", sys.version.split()[0], "pyroute2", m.version("pyroute2"), pyroute2.__file__)' >&2
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin
  : >"$ROOTFS/etc/machine-id"   # systemd makes one at boot
  printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
  # Units that fail or make noise in a container (no udev, no modules, read-only /sys bits).
  for unit in getty@tty1.service systemd-udevd.service systemd-udevd-control.socket \
              systemd-udevd-kernel.socket systemd-modules-load.service sys-kernel-config.mount \
              systemd-remount-fs.service; do
    ln -sf /dev/null "$ROOTFS/etc/systemd/system/$unit"
  done
  tar -C "$ROOTFS" -cf "$TARBALL.partial" .
  mv "$TARBALL.partial" "$TARBALL"
  rm -rf "$ROOTFS"
  # Older tarballs of other package lists are dead weight.
  find "$BASE/build" -maxdepth 1 -name "$NAME-*.tar" ! -name "$(basename "$TARBALL")" -delete
  log "debootstrap + tarball: $(( $(date +%s) - t0 ))s"
fi

have=$(podman image inspect --format '{{index .Labels "org.openvif.rootfs"}}' "$IMAGE" 2>/dev/null || true)
if [ "$have" != "$KEY" ] || [ "${REBUILD:-0}" = 1 ]; then
  t0=$(date +%s)
  podman import -q \
    --change 'CMD ["/sbin/init"]' \
    --change 'ENV container=podman' \
    --change 'STOPSIGNAL SIGRTMIN+3' \
    --change "LABEL org.openvif.rootfs=$KEY" \
    "$TARBALL" "$IMAGE" >/dev/null
  log "podman import $IMAGE: $(( $(date +%s) - t0 ))s"
  # Drop the dangling previous import, if any (only images in our own store).
  podman image prune -f >/dev/null || true
fi
log "image $IMAGE (rootfs $KEY) ready"
