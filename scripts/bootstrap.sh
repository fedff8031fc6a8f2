#!/usr/bin/env bash
# Install what the lab or the test suite needs on a fresh Debian 12 machine (as root), idempotently.
#   scripts/bootstrap.sh lab     apt tools for the lab + the Python venv
#   scripts/bootstrap.sh test    everything the tests and benchmarks use
# Leaves: .venv (Python deps pinned in requirements/), .cache/collections/ansible_collections/openvif/vswitch
# (a symlink to this checkout, so ansible-core finds the collection).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=${1:-test}

LAB_PKGS=(iproute2 iputils-ping python3-venv procps)
TEST_PKGS=("${LAB_PKGS[@]}" tcpdump iperf3 ethtool dnsmasq-base podman runc debootstrap iptables uidmap
           openvswitch-switch rsync qemu-system-x86 kmod postgresql shellcheck
           libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
           network-manager netplan.io   # the bridge role's keyfiles and netplan file, read back by both
           isc-dhcp-client   # a host's own dhclient -6, whose DUID the DHCPv6 move keeps
           openssh-server openssh-client)   # the bridge role over Ansible's ssh connection (a test's own sshd)
case "$PROFILE" in
  lab) PKGS=("${LAB_PKGS[@]}") ;;
  test) PKGS=("${TEST_PKGS[@]}") ;;
  *) echo "usage: $0 lab|test" >&2; exit 2 ;;
esac

missing=()
for pkg in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing ${missing[*]}"
  apt-get update -qq
  # Packages must not start their services here (NetworkManager would take this machine's devices):
  # where no policy-rc.d says so already, one that refuses every start is in place for the install.
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
if [ "$PROFILE" = test ] && command -v ovs-ctl >/dev/null; then
  # The benchmark starts Open vSwitch by hand; the package's own service must not hold its files.
  systemctl disable --now openvswitch-switch >/dev/null 2>&1 || true
fi

if [ "$PROFILE" = test ] && ! getent passwd libvirt-qemu >/dev/null; then
  # libvirtd's qemu driver looks its user up at start even when qemu.conf says root; Debian's
  # libvirt-daemon-system would create it, which the tests do not install (it wants systemd).
  groupadd -f --system libvirt-qemu
  useradd --system --no-create-home --shell /usr/sbin/nologin -g libvirt-qemu libvirt-qemu
fi

if [ "$PROFILE" = test ] && [ ! -x "$ROOT/.cache/xen/etc/xen/scripts/vif-openvswitch" ]; then
  # Debian's own Xen hotplug scripts, run by the tests as xl runs them: downloaded and extracted,
  # never installed (this machine is no Xen host).
  rm -rf "$ROOT/.cache/xen" && mkdir -p "$ROOT/.cache/xen/deb"
  (cd "$ROOT/.cache/xen/deb" && apt-get download -qq xen-utils-common 2>/dev/null)
  dpkg-deb -x "$ROOT"/.cache/xen/deb/xen-utils-common_*.deb "$ROOT/.cache/xen"
fi

PY=${PYTHON:-python3}
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PY" -m venv "$ROOT/.venv"
fi
stamp="$ROOT/.venv/.requirements-$PROFILE"
req="$ROOT/requirements/$PROFILE.txt"
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  "$ROOT/.venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

coll="$ROOT/.cache/collections/ansible_collections/openvif"
mkdir -p "$coll"
ln -sfn "$ROOT" "$coll/vswitch"
echo "bootstrap: $PROFILE ready ($("$ROOT/.venv/bin/ansible" --version | sed -n 1p))"   # sed reads it all: head would break ansible's pipe
