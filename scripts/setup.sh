#!/usr/bin/env bash
# One command that sets felt up on a fresh Debian machine, as root:
# system packages (etcd, iperf3, iproute2, iptables, chromium, podman + runc + debootstrap and the
# standard CNI plugins for the image test, ...), npm dependencies,
# the native addon (compiled from source by node-gyp during `npm ci`) and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs Debian packages)" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  echo "setup: Node.js >= 20 is required (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 1
fi

echo "setup: installing Debian packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  etcd-server etcd-client iperf3 sockperf iputils-ping iproute2 tcpdump iptables nftables \
  ethtool curl ca-certificates chromium python3 make g++ openssl \
  podman runc debootstrap containernetworking-plugins >/dev/null

echo "setup: installing npm dependencies and building the native addon"
# The addon builds against the headers of the Node.js that runs it (/usr/include/node),
# so nothing is downloaded.
npm_config_nodedir=/usr npm ci --no-audit --no-fund

echo "setup: building TypeScript"
npm run build --silent

echo "setup: done. Run the tests with: npm test    and the demo with: npm run demo"
