#!/usr/bin/env bash
# The whole test suite: install, build, run every test in a normal and an
# ASan+UBSan build, then fuzz the untrusted-input parsers briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash deploy/install-deps.sh

echo "== normal build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== ASan + UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPVF_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs")

echo "== fuzzing (libFuzzer, ${PVF_FUZZ_SECONDS:-45} s per harness)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPVF_FUZZ=ON >/dev/null
for src in tests/fuzz_*.c; do
  name=$(basename "$src" .c)
  cmake --build build-fuzz -j"$jobs" --target "$name"
  corpus=$(mktemp -d)
  cp -r "tests/fuzz/${name#fuzz_}/." "$corpus/" 2>/dev/null || true
  ./build-fuzz/tests/"$name" -max_total_time="${PVF_FUZZ_SECONDS:-45}" -rss_limit_mb=2048 \
    -print_final_stats=1 "$corpus" 2>&1 | tail -n 12
  rm -rf "$corpus"
done
echo "all tests passed"
