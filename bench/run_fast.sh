#!/bin/bash
# run_fast.sh - the fast-trial benchmark of every bundled model, in every
# storage format, against the naive path and the plain PyTorch loop; prints
# one markdown table (and the raw outputs after it).
#
#   bench/run_fast.sh [BUILD_DIR]        (default: build)
#
# Environment: TIME   CPU seconds per side per repeat (default 2)
#              REPEATS  repeats, median (default 3)
#              TORCH_TIME  CPU seconds at most per PyTorch loop (default 30)
#              MODELS  bundled models (default: all four)
#              PER_TENSOR  when set, CPU seconds per side for a bench_fast --per-tensor run
#                          of each model (fp32, one repeat) in the raw output
#
# bench_fast writes the fp32 (and bf16) faults its naive side ran; the PyTorch
# loop (tools/bench_torch_loop.py, one thread) replays exactly those, so its
# masked share must equal the naive side's in fp32.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
TIME=${TIME:-2}
REPEATS=${REPEATS:-3}
TORCH_TIME=${TORCH_TIME:-30}
MODELS=${MODELS:-fmnist-lenet dlrm-synth fortunes-tinybert fortunes-llama4}
BENCH=$BUILD/bench/bench_fast
[ -x "$BENCH" ] || { echo "run_fast.sh: $BENCH not built" >&2; exit 2; }
/usr/bin/python3 -c 'import torch' 2>/dev/null || {
    echo "run_fast.sh: the PyTorch loop needs Debian's python3-torch (apt-get install python3-torch)" >&2
    exit 2
}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD0=$(load)
for m in $MODELS; do
    echo "run_fast.sh: $m ..." >&2
    "$BENCH" "$ROOT/models/$m" --time "$TIME" --repeats "$REPEATS" --faults "$OUT/$m.faults" \
        >"$OUT/$m.c"
    for dt in fp32 bf16; do
        f=$OUT/$m.faults
        [ "$dt" = bf16 ] && f=$f.bf16
        /usr/bin/python3 "$ROOT/tools/bench_torch_loop.py" "$ROOT/models/$m" "$f" \
            --time "$TORCH_TIME" --repeats "$REPEATS" --dtype "$dt" >"$OUT/$m.$dt.torch"
    done
    if [ -n "${PER_TENSOR:-}" ]; then
        "$BENCH" "$ROOT/models/$m" --per-tensor --time "$PER_TENSOR" --repeats 1 >"$OUT/$m.tensors"
    else
        : >"$OUT/$m.tensors"
    fi
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo "## Fast trials: $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')"
echo
echo "Machine: $cpu, $(nproc) cores online, load average $LOAD0 (start), $(load) (end)."
echo "Trials per CPU-second on one core, single bit flips uniform over all stored bits of the model,"
echo "$TIME CPU-s per side and repeat, median of $REPEATS repeats; fast/naive is the median of the"
echo "per-repeat ratios. PyTorch loop: tools/bench_torch_loop.py on the naive side's faults, one"
echo "thread, full forward pass per fault; fp32 weights in fp32 (and in bf16: the model cast to"
echo "bfloat16 with CPU autocast, bf16 arithmetic, so its outcomes differ from pvf's bf16 storage"
echo "with fp32 compute). Peak RSS: the bench process of that format (ru_maxrss)."
echo
echo "| model | format | naive trials/s | fast trials/s | fast/naive | settled % | PyTorch loop trials/s | fast/PyTorch | peak RSS |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
torch_rate() { # file -> trials/s or -
    sed -n 's/.*trials_per_s=\([^ ]*\).*/\1/p' "$1" | head -1
}
for m in $MODELS; do
    for dt in fp32 bf16; do
        eval "torch_$dt=\$(torch_rate \"\$OUT/\$m.\$dt.torch\")"
    done
    awk -v model="$m" -v t32="${torch_fp32:-}" -v t16="${torch_bf16:-}" '
        /^format / { on = 1; next }
        /^naive\/s,/ { on = 0 }
        on && NF >= 17 {
            t = ($1 == "fp32") ? t32 : ($1 == "bf16") ? t16 : ""
            tcol = t == "" ? "—" : sprintf("%.3g", t)
            rcol = t == "" ? "—" : sprintf("%.1f", $3 / t)
            printf "| %s | %s | %.3g | %.4g | %.1f | %.1f | %s | %s | %.0f MB |\n",
                   model, $1, $2, $3, $4, $5 + 0, tcol, rcol, $16
        }' "$OUT/$m.c"
done
echo
echo "Checks (the same faults both ways): masked share of pvf's naive side vs the PyTorch loop in"
echo "fp32; faults whose count of incorrect outputs differs (near-ties that rounding order flips);"
echo "the PyTorch forward pass and pvf's golden pass against the eval set's reference logits."
echo
echo "| model | faults replayed | pvf naive masked % | PyTorch masked % | faults judged differently | PyTorch golden max abs diff | pvf golden max abs diff (fp32) | pvf stage rows/trial naive → fast (fp32) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for m in $MODELS; do
    c=$(awk '$1 == "fp32" && NF >= 17 { printf "%s %s %s %s %s", $8, $10, $17, $6, $7 }' "$OUT/$m.c")
    read -r cmask cn cref rn rf <<<"$c"
    t=$OUT/$m.fp32.torch
    tn=$(sed -n 's/.* trials=\([0-9]*\).*/\1/p' "$t")
    tm=$(sed -n 's/.*masked_pct=\([^ ]*\).*/\1/p' "$t")
    td=$(sed -n 's/.*golden_max_delta=\([^ ]*\).*/\1/p' "$t")
    tx=$(sed -n 's/.* differ=\([0-9]*\).*/\1/p' "$t")
    echo "| $m | $tn of $cn | $cmask | $tm% | $tx | $td | $cref | $rn → $rf |"
done
echo
echo "<details><summary>Raw output</summary>"
echo
for m in $MODELS; do
    echo '```'
    cat "$OUT/$m.c" "$OUT/$m.fp32.torch" "$OUT/$m.bf16.torch" "$OUT/$m.tensors"
    echo '```'
done
echo "</details>"
