#!/bin/sh
# Builds and runs the C unit tests of native/ under AddressSanitizer and UBSan.
# Usage: native/test/run.sh   (from anywhere; needs cc). Output ends with "N passed, M failed".
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/.."
out="${TMPDIR:-/tmp}/felt-native-unit.$$"
trap 'rm -f "$out"' EXIT
cc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g -fno-omit-frame-pointer \
  -fsanitize=address,undefined -fno-sanitize-recover=undefined \
  -o "$out" "$here/unit.c" "$here/unit6.c" "$src/csum.c" "$src/gso.c" "$src/gro.c" "$src/ipv4.c" "$src/ipv6.c" "$src/map6.c" "$src/routes.c" \
  "$src/u32map.c" "$src/stats.c" "$src/err.c" "$src/sys.c" "$src/tun_offload.c" "$src/udp_batch.c"
"$out"
