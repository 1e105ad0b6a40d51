#!/bin/sh
# Builds the fuzz harnesses twice each, plain (-O2) and with AddressSanitizer + UndefinedBehavior-
# Sanitizer (every finding fatal, leaks reported at exit):
#   <out>/fuzz, fuzz-asan            the native engine's packet path (harness.c + gen.c; engine.c linked as in production)
#   <out>/jsio-fuzz, jsio-fuzz-asan  the js engine's C I/O (jsio.c; reader*.c, writer.c)
# Usage: native/fuzz/build.sh [OUT_DIR]   (default $TMPDIR/felt-fuzz; needs cc with libasan/libubsan)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/.."
out="${1:-${TMPDIR:-/tmp}/felt-fuzz}"
mkdir -p "$out"
srcs="$here/harness.c $here/gen.c $here/pkt.c $src/csum.c $src/gso.c $src/gro.c $src/ipv4.c $src/ipv6.c $src/map6.c $src/routes.c $src/u32map.c \
$src/stats.c $src/err.c $src/udp.c $src/sys.c $src/tun_offload.c $src/udp_batch.c $src/engine.c $src/engine_ctl.c"
cflags="-std=gnu11 -D_GNU_SOURCE -Wall -Wextra -g"
# shellcheck disable=SC2086 # the lists are meant to split
cc $cflags -O2 -o "$out/fuzz" $srcs -lpthread
# shellcheck disable=SC2086
cc $cflags -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -o "$out/fuzz-asan" $srcs -lpthread
jsio="$here/jsio.c $here/pkt.c $src/csum.c $src/gso.c $src/gro.c $src/ipv4.c $src/ipv6.c $src/err.c $src/stats.c $src/sys.c \
$src/tun_offload.c $src/udp.c $src/udp_batch.c $src/reader.c $src/reader_tun.c $src/reader_udp.c $src/writer.c"
# shellcheck disable=SC2086
cc $cflags -O2 -o "$out/jsio-fuzz" $jsio -lpthread
# shellcheck disable=SC2086
cc $cflags -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -o "$out/jsio-fuzz-asan" $jsio -lpthread
echo "built $out/fuzz, fuzz-asan, jsio-fuzz, jsio-fuzz-asan"
