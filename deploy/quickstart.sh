#!/usr/bin/env bash
# Quick start: install, build, and run the main job on the bundled CNN.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/cli/pvf infer --model models/fmnist-lenet
echo
./build/cli/pvf sweep --model models/fmnist-lenet --trials "${PVF_TRIALS:-100}" --seed 1
