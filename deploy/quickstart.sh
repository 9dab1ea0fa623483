#!/usr/bin/env bash
# Quick start: install, build, check the bundled CNN against PyTorch, then run
# the main job on it: a PVF campaign per tensor, stopped by its confidence
# sequence, stored in pvf's private PostgreSQL (created on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/cli/pvf infer --model models/fmnist-lenet
echo
./build/cli/pvf run --model models/fmnist-lenet --strata tensor --margin "${PVF_MARGIN:-0.02}" \
    --seed 1
