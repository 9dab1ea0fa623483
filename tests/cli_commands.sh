#!/usr/bin/env bash
# cli_commands.sh PVF REPO_ROOT - the happy paths of pvf help, infer, inject
# and sweep on the bundled model models/fmnist-lenet.
#
# Every pvf run here must exit 0 with nothing on stderr; the JSON it prints
# is checked with python3 (assertion messages become the FAIL reason).
source "$(dirname "$0")/lib_cli.sh" cli_commands.sh "$@"
M=$ROOT/models/fmnist-lenet

FP32_TARGETS="conv1.weight conv1.bias conv2.weight conv2.bias fc1.weight fc1.bias fc2.weight fc2.bias fc3.weight fc3.bias"
SCALE_TARGETS="conv1.weight_scale conv2.weight_scale fc1.weight_scale fc2.weight_scale fc3.weight_scale"

# ---- help -----------------------------------------------------------------
if run help "$T/help" help; then
    if grep -q "usage: pvf" "$T/help" && grep -q "sweep" "$T/help"; then
        ok help
    else
        fail help "no usage text on stdout"
    fi
fi
if run version "$T/version" version; then
    if grep -qE '^pvf [0-9]+\.[0-9]+' "$T/version"; then ok version; else fail version "got '$(cat "$T/version")'"; fi
fi

# ---- infer ----------------------------------------------------------------
for f in fp32 fp16 bf16 fp8-e4m3 int8 int4; do
    run "infer_$f" "$T/infer_$f.json" infer --model "$M" --format "$f" --json &&
        check "infer_$f" "$T/infer_$f.json" "$f" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
fmt = sys.argv[2]
assert r["format"] == fmt, f"format {r['format']!r}, expected {fmt!r}"
assert r["inputs"] == 1000, f"inputs {r['inputs']}"
assert r["accuracy"] >= 0.88, f"accuracy {r['accuracy']} < 0.88"
assert r["agreement"] == 1.0, f"agreement {r['agreement']} != 1.0 (reference {r.get('reference')})"
assert r["within_tolerance"] is True, f"within_tolerance {r['within_tolerance']}: max_abs_diff {r['max_abs_diff']} vs max_abs_reference {r['max_abs_reference']}"
want = "logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")
assert r["reference"] == want, f"reference {r['reference']!r}, expected {want!r}"
EOF
done

if run infer_text "$T/infer_text" infer --model "$M"; then
    if grep -qE '^accuracy +0\.(8[89]|9)' "$T/infer_text" && grep -q 'within 1e-4' "$T/infer_text"; then
        ok infer_text
    else
        fail infer_text "unexpected text: $(tr '\n' '|' <"$T/infer_text")"
    fi
fi

run infer_dump_outputs "$T/dump.out" infer --model "$M" --dump-outputs "$T/outputs.safetensors" &&
    check infer_dump_outputs "$T/outputs.safetensors" "$M/eval.safetensors" "$T" <<'EOF'
import os, sys
import numpy as np
import safetensors_io as st
out, _ = st.load(sys.argv[1])  # the reader rejects holes, overlaps and trailing bytes
ev, _ = st.load(sys.argv[2])
assert list(out) == ["outputs"], f"tensors {list(out)}, expected ['outputs']"
o = out["outputs"]
assert o.dtype == np.float32, f"dtype {o.dtype}, expected F32"
assert o.shape == (1000, 10), f"shape {o.shape}, expected (1000, 10)"
ref = ev["logits"]
diff = float(np.max(np.abs(o.astype(np.float64) - ref)))
tol = 1e-4 * float(np.max(np.abs(ref)))
assert diff <= tol, f"max |outputs - logits| = {diff} > {tol}"
left = [f for f in os.listdir(sys.argv[3]) if f.startswith("outputs.safetensors") and f != "outputs.safetensors"]
assert not left, f"temporary files left behind: {left}"
EOF

# ---- inject ---------------------------------------------------------------
run inject_bit30 "$T/inject.json" inject --model "$M" --tensor fc1.weight --index 5 --bit 30 --json &&
    check inject_bit30 "$T/inject.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["tensor"] == "fc1.weight" and r["index"] == 5, f"site {r['tensor']}[{r['index']}]"
assert r["bits"] == 32, f"bits {r['bits']}"
assert r["mask"] == 1 << 30, f"mask {r['mask']:#x}"
ow, nw = int(r["old_word"], 16), int(r["new_word"], 16)
assert ow ^ nw == 1 << 30, f"old_word {r['old_word']} new_word {r['new_word']} differ in {ow ^ nw:#x}, not bit 30"
assert 0.0 <= r["value"] <= 1.0, f"value {r['value']} outside [0, 1]"
assert r["unchanged"] is False, "unchanged is true for a bit flip"
assert 0 <= r["incorrect"] <= r["inputs"] == 1000, f"incorrect {r['incorrect']} of {r['inputs']}"
EOF

# stuck-at-1 on a bit that is already 1 in fc1.weight[5]: nothing changes.
set_bit=$("$PY" -c 'import json,sys; w=int(json.load(open(sys.argv[1]))["old_word"],16); print(next(b for b in range(31,-1,-1) if w>>b&1))' "$T/inject.json" 2>/dev/null)
if [ -z "$set_bit" ]; then
    fail inject_stuck1_unchanged "no old_word from inject_bit30 to pick a set bit from"
else
    run inject_stuck1_unchanged "$T/stuck1.json" inject --model "$M" --tensor fc1.weight --index 5 --fault stuck1 --bit "$set_bit" --json &&
        check inject_stuck1_unchanged "$T/stuck1.json" "$set_bit" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = int(sys.argv[2])
assert r["fault"].startswith("stuck1"), f"fault {r['fault']!r}"
assert r["old_word"] == r["new_word"], f"word changed {r['old_word']} -> {r['new_word']}"
assert int(r["old_word"], 16) >> b & 1, f"bit {b} of {r['old_word']} is not 1"
assert r["unchanged"] is True, f"unchanged {r['unchanged']}"
assert r["value"] == 0, f"value {r['value']}, expected 0"
assert r["incorrect"] == 0, f"incorrect {r['incorrect']}, expected 0"
EOF
fi

# stuck-at-0 with the bit in the fault model (stuck0:B form), on a bit that is 1: it changes.
if [ -n "$set_bit" ]; then
    run inject_stuck0_fixed_bit "$T/stuck0.json" inject --model "$M" --tensor fc1.weight --index 5 --fault "stuck0:$set_bit" --json &&
        check inject_stuck0_fixed_bit "$T/stuck0.json" "$set_bit" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
b = int(sys.argv[2])
ow, nw = int(r["old_word"], 16), int(r["new_word"], 16)
assert ow ^ nw == 1 << b and not nw >> b & 1, f"{r['old_word']} -> {r['new_word']} is not bit {b} cleared"
assert r["unchanged"] is False and 0.0 <= r["value"] <= 1.0, f"unchanged {r['unchanged']} value {r['value']}"
EOF
fi

# --naive: the same fault, every stage for every input; the same outcome.
run inject_naive "$T/inject_naive.json" inject --model "$M" --tensor fc1.weight --index 5 --bit 30 --naive --json &&
    check inject_naive "$T/inject.json" "$T/inject_naive.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("incorrect", "nonfinite", "value", "masked"):
    assert a[k] == b[k], f"{k}: fast {a[k]}, naive {b[k]}"
assert b["stage_rows"] == 5 * b["inputs"], f"naive ran {b['stage_rows']} (input, stage) pairs"
assert 0 < a["stage_rows"] < b["stage_rows"], f"fast ran {a['stage_rows']}, naive {b['stage_rows']}"
assert b["settled"] is False
EOF

run inject_kbit "$T/kbit.json" inject --model "$M" --tensor conv2.weight --index 17 --fault kbit:2 --bit 3,29 --json &&
    check inject_kbit "$T/kbit.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
want = (1 << 3) | (1 << 29)
assert r["mask"] == want, f"mask {r['mask']:#x}, expected {want:#x}"
assert int(r["old_word"], 16) ^ int(r["new_word"], 16) == want, f"{r['old_word']} -> {r['new_word']}"
assert 0.0 <= r["value"] <= 1.0, f"value {r['value']}"
EOF

run inject_burst "$T/burst.json" inject --model "$M" --tensor fc3.bias --index 9 --fault burst:3 --bit 20 --json &&
    check inject_burst "$T/burst.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
want = 0b111 << 20
assert r["mask"] == want, f"mask {r['mask']:#x}, expected {want:#x}"
assert int(r["old_word"], 16) ^ int(r["new_word"], 16) == want, f"{r['old_word']} -> {r['new_word']}"
EOF

run inject_int8_scale "$T/scale.json" inject --model "$M" --format int8 --tensor conv1.weight_scale --index 2 --bit 30 --json &&
    check inject_int8_scale "$T/scale.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["tensor"] == "conv1.weight_scale" and r["format"] == "int8", f"{r['tensor']} {r['format']}"
assert r["bits"] == 32, f"a scale is an fp32 word, got bits {r['bits']}"
assert int(r["old_word"], 16) ^ int(r["new_word"], 16) == 1 << 30, f"{r['old_word']} -> {r['new_word']}"
assert r["old_value"] > 0, f"old scale {r['old_value']} not positive"
assert 0.0 <= r["value"] <= 1.0, f"value {r['value']}"
EOF

run inject_int8_code "$T/code.json" inject --model "$M" --format int8 --tensor fc1.weight --index 5 --bit 7 --json &&
    check inject_int8_code "$T/code.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["bits"] == 8, f"an int8 code is an 8-bit word, got bits {r['bits']}"
ow, nw = int(r["old_word"], 16), int(r["new_word"], 16)
assert ow < 256 and nw < 256 and ow ^ nw == 0x80, f"{r['old_word']} -> {r['new_word']}"
assert 0.0 <= r["value"] <= 1.0, f"value {r['value']}"
EOF

# ---- sweep ----------------------------------------------------------------
# Same seed twice (in parallel: two cores), then another seed.
(timeout 120 "$PVF" sweep --model "$M" --trials 20 --seed 7 --json >"$T/s7a.json" 2>"$T/s7a.json.err" </dev/null; exit $?) 2>/dev/null &
pid=$!
run sweep_seed_a "$T/s7b.json" sweep --model "$M" --trials 20 --seed 7 --json
rc_b=$?
wait "$pid"
rc_a=$?
if [ "$rc_a" -ne 0 ] || [ -s "$T/s7a.json.err" ]; then
    fail sweep_seed_a "pvf sweep --seed 7 exited $rc_a: $(head -c 300 "$T/s7a.json.err" | tr '\n' '|')"
    rc_a=1
fi
if [ "$rc_a" -eq 0 ] && [ "$rc_b" -eq 0 ]; then
    check sweep_fp32_targets_and_intervals "$T/s7a.json" 20 "$FP32_TARGETS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
trials, want = int(sys.argv[2]), sys.argv[3].split()
names = [t["name"] for t in r["targets"]]
assert sorted(names) == sorted(want), f"targets {names}, expected {want}"
assert r["trials_per_target"] == trials, f"trials_per_target {r['trials_per_target']}"
for t in r["targets"]:
    assert t["trials"] == trials, f"{t['name']}: {t['trials']} trials"
    assert 0.0 <= t["low"] <= t["pvf"] <= t["high"] <= 1.0, f"{t['name']}: pvf {t['pvf']} not in [{t['low']}, {t['high']}]"
    assert t["scale"] is False, f"{t['name']} marked as a scale in fp32"
mp = r["model_pvf"]
assert 0.0 <= mp["low"] <= mp["pvf"] <= mp["high"] <= 1.0, f"model pvf {mp['pvf']} not in [{mp['low']}, {mp['high']}]"
assert r["trials"] == trials * len(want), f"total trials {r['trials']}"
EOF
    check sweep_same_seed_same_result "$T/s7a.json" "$T/s7b.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pa = {t["name"]: (t["pvf"], t["low"], t["high"], t["p_any_wrong"]) for t in a["targets"]}
pb = {t["name"]: (t["pvf"], t["low"], t["high"], t["p_any_wrong"]) for t in b["targets"]}
assert pa == pb, "same seed, different results: " + ", ".join(
    f"{n} {pa.get(n)} vs {pb.get(n)}" for n in sorted(set(pa) | set(pb)) if pa.get(n) != pb.get(n))
assert a["model_pvf"]["pvf"] == b["model_pvf"]["pvf"], "model pvf differs"
EOF
    if run sweep_other_seed "$T/s8.json" sweep --model "$M" --trials 20 --seed 8 --json; then
        check sweep_other_seed "$T/s7a.json" "$T/s8.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pa = {t["name"]: t["pvf"] for t in a["targets"]}
pb = {t["name"]: t["pvf"] for t in b["targets"]}
assert set(pa) == set(pb), f"targets differ: {sorted(pa)} vs {sorted(pb)}"
assert b["seed"] == 8, f"seed {b['seed']}"
assert any(pa[n] != pb[n] for n in pa), "seeds 7 and 8 gave the same pvf on every target"
EOF
    fi
fi

# The fast path and the plain full forward pass (--naive) reach the same
# outcome trial by trial, so the same estimates.
if run sweep_naive "$T/naive.json" sweep --model "$M" --trials 20 --seed 7 --naive --json; then
    check sweep_naive_same_result "$T/s7a.json" "$T/naive.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
pa = {t["name"]: (t["pvf"], t["low"], t["high"], t["p_any_wrong"]) for t in a["targets"]}
pb = {t["name"]: (t["pvf"], t["low"], t["high"], t["p_any_wrong"]) for t in b["targets"]}
assert pa == pb, "fast and naive differ: " + ", ".join(
    f"{n} {pa.get(n)} vs {pb.get(n)}" for n in sorted(set(pa) | set(pb)) if pa.get(n) != pb.get(n))
EOF
fi

run sweep_int8_targets "$T/int8.json" sweep --model "$M" --format int8 --trials 2 --json &&
    check sweep_int8_targets "$T/int8.json" "$FP32_TARGETS" "$SCALE_TARGETS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
plain, scales = sys.argv[2].split(), sys.argv[3].split()
names = [t["name"] for t in r["targets"]]
assert sorted(names) == sorted(plain + scales), f"targets {names}, expected {plain + scales}"
assert r["format"] == "int8", f"format {r['format']}"
for t in r["targets"]:
    is_scale = t["name"] in scales
    assert t["scale"] is is_scale, f"{t['name']}: scale {t['scale']}"
    want_bits = 8 if t["name"].endswith(".weight") else 32
    assert t["bits"] == want_bits, f"{t['name']}: {t['bits']} bits, expected {want_bits}"
    assert t["low"] <= t["pvf"] <= t["high"], f"{t['name']}: pvf {t['pvf']} not in [{t['low']}, {t['high']}]"
mp = r["model_pvf"]
assert mp["low"] <= mp["pvf"] <= mp["high"], f"model pvf {mp['pvf']} not in [{mp['low']}, {mp['high']}]"
EOF

if run sweep_one_tensor "$T/one.txt" sweep --model "$M" --tensor fc3.weight --trials 20; then
    rows=$(grep -E '^(conv|fc)[0-9]' "$T/one.txt")
    if [ "$(printf '%s\n' "$rows" | grep -c .)" -eq 1 ] && [ "${rows%% *}" = fc3.weight ] &&
        grep -q '^selected (site-weighted) *840 ' "$T/one.txt"; then
        ok sweep_one_tensor
    else
        fail sweep_one_tensor "expected one row, fc3.weight: $(tr '\n' '|' <"$T/one.txt")"
    fi
fi

for fault in burst:3 kbit:2 stuck0 bit:31; do
    name="sweep_fault_${fault/:/_}"
    run "$name" "$T/$name.json" sweep --model "$M" --fault "$fault" --trials 4 --seed 3 --json &&
        check "$name" "$T/$name.json" "$fault" "$FP32_TARGETS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
fault, want = sys.argv[2], sys.argv[3].split()
assert r["fault"] == fault, f"fault {r['fault']!r}, expected {fault!r}"
names = [t["name"] for t in r["targets"]]
assert sorted(names) == sorted(want), f"targets {names}"
for t in r["targets"]:
    assert t["trials"] == 4, f"{t['name']}: {t['trials']} trials"
    assert 0.0 <= t["low"] <= t["pvf"] <= t["high"] <= 1.0, f"{t['name']}: pvf {t['pvf']} not in [{t['low']}, {t['high']}]"
mp = r["model_pvf"]
assert mp["low"] <= mp["pvf"] <= mp["high"], f"model pvf {mp['pvf']} not in [{mp['low']}, {mp['high']}]"
EOF
done

# A target no trial can hurt (PVF exactly 0) keeps 0 inside its interval,
# whatever the trial count (3 trials: the Wilson bounds must not round above 0).
run sweep_interval_at_zero "$T/zero.json" sweep --model "$M" --tensor fc2.bias --tensor fc3.bias --fault stuck0 --trials 3 --json &&
    check sweep_interval_at_zero "$T/zero.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for t in r["targets"] + [dict(r["model_pvf"], name="model")]:
    assert t["low"] <= t["pvf"] <= t["high"], f"{t['name']}: pvf {t['pvf']} not in [{t['low']}, {t['high']}]"
assert any(t["pvf"] == 0 for t in r["targets"]), "no target with PVF 0 to test the edge"
EOF


# ---- DLRM and BERT ----------------------------------------------------------
# The bundled models against PyTorch in every storage format; inject and sweep
# --by on the small fixtures (fast).
DS=$ROOT/models/dlrm-synth
TB=$ROOT/models/fortunes-tinybert
D=$ROOT/tests/fixtures/dlrm-dot-itself
B=$ROOT/tests/fixtures/bert-l4
for f in fp32 bf16 int8 int4; do
    run "infer_dlrm_$f" "$T/infer_dlrm_$f.json" infer --model "$DS" --format "$f" --json &&
        check "infer_dlrm_$f" "$T/infer_dlrm_$f.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["architecture"] == "dlrm" and r["inputs"] == 1000, f"{r['architecture']} {r['inputs']}"
assert r["agreement"] == 1.0, f"decision agreement {r['agreement']}"
assert r["within_tolerance"] is True, f"max_abs_diff {r['max_abs_diff']}"
assert 0.8 < r["auc"] <= 1.0, f"auc {r.get('auc')}"
assert 0.0 < r["log_loss"] < 0.6, f"log_loss {r.get('log_loss')}"
EOF
    run "infer_bert_$f" "$T/infer_bert_$f.json" infer --model "$TB" --format "$f" --json &&
        check "infer_bert_$f" "$T/infer_bert_$f.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["architecture"] == "bert", r["architecture"]
assert r["agreement"] == 1.0, f"top-1 agreement {r['agreement']}"
assert r["within_tolerance"] is True, f"max_abs_diff {r['max_abs_diff']}"
assert r["accuracy"] > 0.5, f"accuracy {r['accuracy']}"
assert "auc" not in r, "a classifier has no AUC"
EOF
done

run inject_dlrm "$T/inject_dlrm.json" inject --model "$D" --tensor emb_l.2.weight --index 4 --bit 30 --json &&
    run inject_dlrm_tau "$T/inject_dlrm_tau.json" inject --model "$D" --tensor emb_l.2.weight --index 4 --bit 30 --threshold 0.001 --json &&
    check inject_dlrm_threshold "$T/inject_dlrm.json" "$T/inject_dlrm_tau.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
assert a["bits"] == 32 and int(a["old_word"], 16) ^ int(a["new_word"], 16) == 1 << 30, a
# -1.53 (0xbfc3cc24) with bit 30 set is a NaN: JSON has no NaN, the value is a string
assert a["new_value"] == "nan" and a["nonfinite"] > 0, f"new_value {a['new_value']!r}"
# |dp| > 0.001 counts every input whose decision flipped, and more
assert b["incorrect"] >= a["incorrect"], f"threshold {b['incorrect']} < decision {a['incorrect']}"
assert b["incorrect"] > 0, "a bit-30 flip of a used embedding row moved no probability by 0.001"
EOF

run inject_bert "$T/inject_bert.json" inject --model "$B" --format int8 --tensor bert.encoder.layer.3.attention.self.query.weight_scale --index 0 --bit 30 --json &&
    check inject_bert "$T/inject_bert.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["bits"] == 32 and r["old_value"] > 0, r
assert 0.0 <= r["value"] <= 1.0 and r["inputs"] == 6, r
EOF

for by in component layer; do
    run "sweep_dlrm_by_$by" "$T/sd_$by.json" sweep --model "$D" --format int8 --trials 6 --by "$by" --json &&
        check "sweep_dlrm_by_$by" "$T/sd_$by.json" "$by" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
by = sys.argv[2]
names = [t["name"] for t in r["targets"]]
want = {"component": ["bottom_mlp", "embeddings", "top_mlp"],
        "layer": ["bot_l.0", "bot_l.2", "embeddings", "top_l.0", "top_l.2"]}[by]
assert r["by"] == by and names == want, f"by {r['by']}: {names}, expected {want}"
members = sorted(m for t in r["targets"] for m in t["members"])
assert len(members) == len(set(members)) == 12 + 8, f"{len(members)} members: 12 tensors, 8 scales"
emb = next(t for t in r["targets"] if t["name"] == "embeddings")
assert "emb_l.3.weight" in emb["members"] and "emb_l.3.weight_scale" in emb["members"], emb["members"]
assert emb["elements"] == (5 + 7 + 3 + 100) * 4 + (5 + 7 + 3 + 100), emb["elements"]
for t in r["targets"]:
    assert t["trials"] == 6 and t["low"] <= t["pvf"] <= t["high"], t
assert r["trials"] == 6 * len(want), r["trials"]
EOF
done

run sweep_bert_by_component "$T/sb_c.txt" sweep --model "$B" --trials 3 --by component
if [ -s "$T/sb_c.txt" ]; then
    got=$(awk 'NR > 3 && NF > 6 && $1 ~ /^[a-z]/ && $1 != "model" {print $1}' "$T/sb_c.txt" | tr '\n' ' ')
    want="embeddings layernorm attention.q attention.k attention.v attention.o ffn pooler classifier "
    if [ "$got" = "$want" ] && grep -q '^model (site-weighted)' "$T/sb_c.txt"; then
        ok sweep_bert_by_component
    else
        fail sweep_bert_by_component "rows '$got', expected '$want'"
    fi
fi
run sweep_bert_by_layer "$T/sb_l.json" sweep --model "$B" --trials 2 --by layer --seed 5 --json &&
    check sweep_bert_by_layer "$T/sb_l.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
names = [t["name"] for t in r["targets"]]
want = ["embeddings", "layer.0", "layer.1", "layer.2", "layer.3", "pooler", "classifier"]
assert names == want, f"{names}"
assert sum(t["elements"] for t in r["targets"]) == 1689603, "every parameter in one layer group"
EOF

run sweep_bert_by_layer_component "$T/sb_lc.json" sweep --model "$B" --trials 2 --by layer.component --executors 1 --json &&
    run sweep_bert_by_layer_component_2x "$T/sb_lc2.json" sweep --model "$B" --trials 2 --by layer.component --executors 2 --json &&
    check sweep_bert_by_layer_component "$T/sb_lc.json" "$T/sb_lc2.json" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
names = [t["name"] for t in a["targets"]]
want = ["embeddings", "embeddings.layernorm"] + [f"layer.{i}.{c}" for i in range(4) for c in
        ("attention.q", "attention.k", "attention.v", "attention.o", "layernorm", "ffn")] + ["pooler", "classifier"]
assert names == want, f"{names}"
q = next(t for t in a["targets"] if t["name"] == "layer.2.attention.q")
assert q["members"] == ["bert.encoder.layer.2.attention.self.query.weight",
                        "bert.encoder.layer.2.attention.self.query.bias"], q["members"]
# the same sites and results on one executor or two
assert [(t["name"], t["pvf"], t["p_any_wrong"]) for t in a["targets"]] == \
       [(t["name"], t["pvf"], t["p_any_wrong"]) for t in b["targets"]], "executors changed the results"
EOF

summary
