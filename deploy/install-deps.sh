#!/usr/bin/env bash
# Installs what pvf needs on Debian 12, by package name. Used by the Quick
# start, by tests/run-all.sh and by CI. Pass --train to add PyTorch for the
# scripts in tools/ that retrain the bundled models.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config     # C11 toolchain, CMake build
  clang libclang-rt-14-dev             # libFuzzer harnesses, sanitizer runtime
  libopenblas-dev                      # GEMM kernels
  libjansson-dev                       # JSON: safetensors headers, config.json, --json output
  libzmq3-dev libmsgpack-dev libuv1-dev libpq-dev   # distributed runtime
  python3                              # CLI tests parse --json output
)
if [ "${1:-}" = "--train" ]; then
  pkgs+=(python3-torch python3-numpy dataset-fashion-mnist fortunes fortunes-min)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
