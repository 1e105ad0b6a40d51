#!/usr/bin/env bash
# The full fuzz run: at least 1,000,000 random, valid and mutated packets through
# the decap and encap paths of each engine, each run on its own:
#   js      the js engine's per-packet decisions (JsForwarder, PacketIO and batched paths), heap
#           measured after a full GC round by round;
#   jsio    the js engine's C I/O (reader.c: TSO/TSO6 split, UDP GRO split; writer.c: GSO trains, GRO
#           writes; IPv4 and IPv6), plain and ASan/UBSan builds;
#   native  the native engine's packet path (engine.c), plain and ASan/UBSan builds. The verdicts
#           come from the same reference model as the js run (scripts/fuzz/model.ts):
#           fuzz --emit | node dist/scripts/fuzz-vectors.js | fuzz --vectors -
#
#   npm run fuzz                         (builds first; = bash scripts/fuzz.sh)
#   bash scripts/fuzz.sh [--count N] [--seed S] [--only js|jsio|native]
#
# --count: inputs per run (default 1000000); --seed: default a fresh one (printed, so a failing run
# can be repeated). Bursts that break an invariant are saved under test-artifacts/fuzz/ and replay
# with `<build dir>/fuzz --replay FILE` (they carry the verdicts). Needs: node, the built dist/ (npm run build), cc with
# libasan/libubsan. Exit status 0 only when every run held every invariant.
set -euo pipefail

count=1000000
seed=$(( $(date +%s) % 1000000 ))
only=all
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "usage: $0 [--count N] [--seed S] [--only js|jsio|native]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
artifacts="$root/test-artifacts/fuzz"
mkdir -p "$artifacts"
build=$(mktemp -d "${TMPDIR:-/tmp}/felt-fuzz.XXXXXX")
trap 'rm -rf "$build"' EXIT

echo "fuzz: $count inputs per run, seed $seed"
status=0
results=()

for script in fuzz-js fuzz-vectors; do
  if [ ! -f "dist/scripts/$script.js" ]; then
    echo "dist/scripts/$script.js is missing: run npm run build first" >&2
    exit 2
  fi
done

if [ "$only" = all ] || [ "$only" = js ]; then
  echo "== js engine (node --expose-gc, 10 rounds)"
  if node --expose-gc dist/scripts/fuzz-js.js --count "$count" --seed "$seed" --rounds 10; then
    results+=("js: ok")
  else
    results+=("js: FAILED"); status=1
  fi
fi

# One sanitizer set-up for every ASan/UBSan run: abort on the first report, leaks checked at exit.
asan_env() {
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 "$@"
}

if [ "$only" != js ]; then
  sh native/fuzz/build.sh "$build"
fi

# The native harness's inputs, with the model's verdict written next to each, run through it.
# Usage: native_run BINARY SEED [prefix command...]
native_run() {
  local bin=$1 s=$2
  shift 2
  "$@" "$build/$bin" --emit --count "$count" --seed "$s" | node dist/scripts/fuzz-vectors.js |
    "$@" "$build/$bin" --vectors - --seed "$s" --save-dir "$artifacts"
}

if [ "$only" = all ] || [ "$only" = jsio ]; then
  echo "== js engine C I/O, plain build"
  if "$build/jsio-fuzz" --count "$count" --seed "$seed"; then
    results+=("jsio: ok")
  else
    results+=("jsio: FAILED"); status=1
  fi
  echo "== js engine C I/O, ASan + UBSan build"
  if asan_env "$build/jsio-fuzz-asan" --count "$count" --seed "$((seed + 1))"; then
    results+=("jsio ASan/UBSan: ok")
  else
    results+=("jsio ASan/UBSan: FAILED"); status=1
  fi
fi

if [ "$only" = all ] || [ "$only" = native ]; then
  echo "== native engine, plain build"
  if native_run fuzz "$seed"; then
    results+=("native: ok")
  else
    results+=("native: FAILED"); status=1
  fi
  echo "== native engine, ASan + UBSan build (leak check at exit)"
  if native_run fuzz-asan "$((seed + 1))" asan_env; then
    results+=("native ASan/UBSan: ok")
  else
    results+=("native ASan/UBSan: FAILED"); status=1
  fi
fi

echo "== summary (seed $seed, $count inputs per run)"
printf '  %s\n' "${results[@]}"
[ $status -eq 0 ] || echo "saved bursts (if any): $artifacts"
exit $status
