#!/usr/bin/env bash
# cli_stats.sh PVF REPO_ROOT - pvf stats simulate: the anytime-valid stopping
# rule on simulated strata of known PVF must keep its promised coverage
# (final interval holds P in >= 95 % of 1,000 runs at confidence 0.95) for
# P = 0.5, 0.05, 0.005; the JSON is checked with python3; bad flags fail with
# one line and exit 2.
source "$(dirname "$0")/lib_cli.sh" cli_stats.sh "$@"

# ---- coverage at P = 0.5, 0.05, 0.005 (the acceptance criterion) -----------
# Margins chosen so that the three take a few seconds together (also under
# ASan): the stop comes after ~1,300 / ~7,600 / ~24,000 trials per run.
for case in "0.5 0.05" "0.05 0.01" "0.005 0.002"; do
    set -- $case
    p=$1 e=$2
    out="$T/sim_$p.json"
    run "coverage_p$p" "$out" stats simulate --p "$p" --margin "$e" --confidence 0.95 \
        --runs 1000 --seed 7 --json &&
        check "coverage_p$p" "$out" "$p" "$e" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
p, e = float(sys.argv[2]), float(sys.argv[3])
assert d["p"] == p and d["margin"] == e and d["confidence"] == 0.95, d
assert d["runs"] == 1000 and d["values"] == "binary" and d["cs"] == "beta", d
assert d["coverage"] >= 0.95, f"coverage {d['coverage']} < 0.95 at P = {p}"
assert d["share_capped"] == 0, f"runs stopped by the cap: {d['share_capped']}"
assert 0 < d["mean_half_width"] <= e, f"mean half-width {d['mean_half_width']} > margin {e}"
assert 0 < d["median_trials"] <= 10 * d["mean_trials"], d
# validity costs trials: more than a fixed-n Wald design knowing the true P
assert d["mean_trials"] >= d["leveugle_n_p"], d
assert d["leveugle_n_p_half"] == round(d["leveugle_n_p_half"]) >= d["leveugle_n_p"], d
print(f"P={p} margin={e}: coverage {d['coverage']:.4f}, mean trials {d['mean_trials']:.0f}, "
      f"median {d['median_trials']:.0f}, Leveugle {d['leveugle_n_p_half']} / {d['leveugle_n_p']}",
      file=sys.stderr)
EOF
done

# ---- Leveugle figures: infinite population, t = 1.960 -------------------------
run leveugle "$T/lev.json" stats simulate --p 0.1 --margin 0.01 --confidence 0.95 --runs 1 \
    --max-trials 10 --json &&
    check leveugle "$T/lev.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["leveugle_n_p_half"] == 9604, d   # 1.96^2 / 4 / 0.01^2
assert d["leveugle_n_p"] == 3458, d        # 1.96^2 * 0.09 / 0.01^2 = 3457.4
assert d["share_capped"] == 1 and d["median_trials"] == 10, d
EOF

# ---- the same seed prints the same figures; another seed other ones ---------
run same_a "$T/a.json" stats simulate --p 0.05 --margin 0.03 --confidence 0.9 --runs 200 --seed 3 --json &&
    run same_b "$T/b.json" stats simulate --p 0.05 --margin 0.03 --confidence 0.9 --runs 200 --seed 3 --json &&
    run same_c "$T/c.json" stats simulate --p 0.05 --margin 0.03 --confidence 0.9 --runs 200 --seed 4 --json &&
    check reproducible "$T/a.json" "$T/b.json" "$T/c.json" <<'EOF'
import json, sys
a, b, c = (json.load(open(f)) for f in sys.argv[1:4])
for d in (a, b, c):
    del d["seconds"]
assert a == b, "same seed, different figures"
assert a["mean_trials"] != c["mean_trials"], "another seed gave the same trials"
EOF

# ---- fractions with the empirical-Bernstein CS ------------------------------
run fraction "$T/frac.json" stats simulate --p 0.1 --margin 0.02 --confidence 0.95 --runs 300 \
    --values fraction --inputs 10 --json &&
    check fraction "$T/frac.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["values"] == "fraction" and d["cs"] == "empirical-bernstein" and d["inputs"] == 10, d
assert d["coverage"] >= 0.95, d
assert d["share_capped"] == 0 and d["mean_half_width"] <= 0.02, d
EOF

# ---- text output --------------------------------------------------------------
if run text "$T/text" stats simulate --p 0.2 --margin 0.1 --confidence 0.95 --runs 50; then
    if grep -q "^coverage" "$T/text" && grep -q "Leveugle fixed n, p = 0.5" "$T/text"; then
        ok text
    else
        fail text "no coverage / Leveugle lines: $(head -c 300 "$T/text" | tr '\n' '|')"
    fi
fi

# ---- bad flags: exit 2, nothing on stdout, one line "pvf stats..." naming the flag
bad() {
    local name=$1 needle=$2
    shift 2
    local rc
    (timeout 30 "$PVF" "$@" >"$T/bad.out" 2>"$T/bad.err" </dev/null; exit $?) 2>/dev/null
    rc=$?
    if [ "$rc" -ne 2 ]; then
        fail "$name" "exit $rc, expected 2: $(head -c 200 "$T/bad.err" | tr '\n' '|')"
    elif [ -s "$T/bad.out" ]; then
        fail "$name" "wrote to stdout"
    elif [ "$(wc -l <"$T/bad.err")" -ne 1 ]; then
        fail "$name" "stderr is not one line: $(head -c 300 "$T/bad.err" | tr '\n' '|')"
    elif ! grep -q '^pvf stats' "$T/bad.err"; then
        fail "$name" "stderr does not start with 'pvf stats': $(cat "$T/bad.err")"
    elif ! grep -qF -- "$needle" "$T/bad.err"; then
        fail "$name" "stderr does not name '$needle': $(cat "$T/bad.err")"
    else
        ok "$name"
    fi
}
S="stats simulate"
OKF="--p 0.1 --margin 0.05 --confidence 0.95 --runs 10"
bad no_subcommand       "subcommand"     stats
bad unknown_subcommand  "frobnicate"     stats frobnicate
bad unknown_flag        "--colour"       $S $OKF --colour red
bad positional          "stray"          $S $OKF stray
bad missing_p           "--p"            $S --margin 0.05 --confidence 0.95 --runs 10
bad missing_margin      "--margin"       $S --p 0.1 --confidence 0.95 --runs 10
bad missing_confidence  "--confidence"   $S --p 0.1 --margin 0.05 --runs 10
bad missing_runs        "--runs"         $S --p 0.1 --margin 0.05 --confidence 0.95
bad p_above_1           "--p"            $S --p 1.5 --margin 0.05 --confidence 0.95 --runs 10
bad p_negative          "--p"            $S --p -0.1 --margin 0.05 --confidence 0.95 --runs 10
bad p_text              "--p"            $S --p abc --margin 0.05 --confidence 0.95 --runs 10
bad p_nan               "--p"            $S --p nan --margin 0.05 --confidence 0.95 --runs 10
bad margin_zero         "--margin"       $S --p 0.1 --margin 0 --confidence 0.95 --runs 10
bad confidence_one      "--confidence"   $S --p 0.1 --margin 0.05 --confidence 1 --runs 10
bad confidence_percent  "--confidence"   $S --p 0.1 --margin 0.05 --confidence 95 --runs 10
bad runs_zero           "--runs"         $S --p 0.1 --margin 0.05 --confidence 0.95 --runs 0
bad runs_text           "--runs"         $S --p 0.1 --margin 0.05 --confidence 0.95 --runs 1e3
bad max_trials_zero     "--max-trials"   $S $OKF --max-trials 0
bad seed_negative       "--seed"         $S $OKF --seed -1
bad values_nope         "--values"       $S $OKF --values nope
bad inputs_zero         "--inputs"       $S $OKF --values fraction --inputs 0
bad inputs_binary       "--inputs"       $S $OKF --inputs 5
bad missing_value       "--runs"         $S --p 0.1 --margin 0.05 --confidence 0.95 --runs

summary
