#!/usr/bin/env bash
# Installs, from Debian's archive, what the test cluster's node and the image builds need: containerd, runc, the
# CNI plugins (bridge, host-local, loopback), nftables (kube-proxy's nftables mode runs `nft`), busybox-static (the
# /bin/sh in test images), bash-static (the bash of the runner helper image), debootstrap and buildah.
# Idempotent: installs only what is missing. Needs root; without root (or without apt-get) it prints one line
# saying why and exits 3, so callers can run without a node.
set -euo pipefail
packages=(containerd runc containernetworking-plugins nftables busybox-static bash-static debootstrap buildah)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "setup-node: not root, cannot install ${missing[*]}" >&2
  exit 3
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-node: no apt-get, cannot install ${missing[*]}" >&2
  exit 3
fi
echo "setup-node: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Only the packages are wanted: the node runs its own containerd, so Debian's service must not start.
policy=$(mktemp)
printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"
trap 'rm -f "$policy"' EXIT
restore_policy=0
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  cp "$policy" /usr/sbin/policy-rc.d && restore_policy=1
fi
{ apt-get update -qq || true; } >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
if [[ $restore_policy -eq 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
