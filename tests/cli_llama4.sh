#!/usr/bin/env bash
# cli_llama4.sh PVF REPO_ROOT - pvf on Llama 4 checkpoints: parity of the
# bundled model in bf16 and both Meta packagings, sweep --by component, and
# broken inputs (each one clear error line, exit 1 or 2, no crash; see
# expect_fail in lib_cli.sh). The broken inputs are made in a temp dir from
# the small test checkpoint tests/fixtures/llama4-mm.
source "$(dirname "$0")/lib_cli.sh" cli_llama4.sh "$@"
B=$ROOT/models/fortunes-llama4
MM=$ROOT/tests/fixtures/llama4-mm

# ---- parity: pvf infer --json ------------------------------------------------
# (bf16 and llama4-fp8 in test_llama4.c: each golden pass costs seconds under ASan)
for f in fp32 llama4-int4; do
    if (timeout 120 "$PVF" infer --model "$B" --format "$f" --json >"$T/infer_$f.json" 2>"$T/err"); then
        if msg=$("$PY" - "$T/infer_$f.json" "$f" 2>&1 <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
fmt = sys.argv[2]
ref = "logits" if fmt == "fp32" else "logits_" + fmt.replace("-", "_")
assert o["architecture"] == "llama4_text", o["architecture"]
assert o["format"] == fmt and o["reference"] == ref, (o["format"], o.get("reference"))
assert o["positions"] == 96 and o["inputs"] == 24, (o.get("positions"), o["inputs"])
assert o["agreement"] == 1.0, f"agreement {o['agreement']}"
assert o["within_tolerance"] and o["max_abs_diff"] <= 1e-4 * o["max_abs_reference"], o["max_abs_diff"]
assert 0.3 < o["accuracy"] < 1.0, f"next-byte accuracy {o['accuracy']}"
EOF
        ); then ok "infer_$f"; else fail "infer_$f" "$(printf '%s\n' "$msg" | tail -n 1)"; fi
    else
        fail "infer_$f" "exit $?: $(head -c 300 "$T/err")"
    fi
done

# ---- sweep --by component ----------------------------------------------------
if (timeout 120 "$PVF" sweep --model "$MM" --format llama4-int4 --trials 3 --by component --json \
        --executors 2 >"$T/sweep.json" 2>"$T/err"); then
    if msg=$("$PY" - "$T/sweep.json" 2>&1 <<'EOF'
import json, sys
o = json.load(open(sys.argv[1]))
assert o["by"] == "component"
names = [c["name"] for c in o["targets"]]
want = {"embed_tokens", "attention.rope", "attention.nope", "router", "shared_expert", "dense_mlp",
        "norms", "lm_head"} | {f"layers.{L}.expert.{e}" for L in (0, 1, 3) for e in range(4)}
assert set(names) == want, sorted(set(names) ^ want)
c = {c["name"]: c for c in o["targets"]}
t = c["layers.1.expert.2"]["members"]
assert sorted(t) == sorted(f"language_model.model.layers.1.feed_forward.experts.{w}[2]{s}"
                           for w in ("gate_up_proj", "down_proj") for s in ("", "_scale")), t
assert c["layers.1.expert.2"]["bits"] == 0  # int4 codes and fp32 scales
assert c["router"]["bits"] == 16 and o["trials_per_target"] == 3
assert sum(x["population"] for x in o["targets"]) > 0 and 0 <= o["model_pvf"]["pvf"] <= 1
EOF
    ); then ok sweep_by_component; else fail sweep_by_component "$(printf '%s\n' "$msg" | tail -n 1)"; fi
else
    fail sweep_by_component "exit $?: $(head -c 300 "$T/err")"
fi

# ---- broken inputs -----------------------------------------------------------
if ! PYTHONPATH="$ROOT/tools" "$PY" - "$MM" "$T" <<'EOF'; then
import json, os, shutil, sys
import numpy as np
import safetensors_io as st

src, out = sys.argv[1], sys.argv[2]
cfg = json.load(open(os.path.join(src, "config.json")))
weights, wmeta = st.load(os.path.join(src, "model.safetensors"))
ev, emeta = st.load(os.path.join(src, "eval.safetensors"))

def model_dir(name, config=None, w=None):
    d = os.path.join(out, "m_" + name)
    os.makedirs(d)
    json.dump(cfg if config is None else config, open(os.path.join(d, "config.json"), "w"))
    if w is None:
        shutil.copy(os.path.join(src, "model.safetensors"), d)
    else:
        st.save(os.path.join(d, "model.safetensors"), w, wmeta)
    shutil.copy(os.path.join(src, "eval.safetensors"), d)

def text(**change):
    c = json.loads(json.dumps(cfg))
    c["text_config"].update(change)
    return c

c = json.loads(json.dumps(cfg)); del c["text_config"]["hidden_size"]; model_dir("no_hidden", c)
model_dir("short_positions", text(max_position_embeddings=8))
model_dir("rope_yarn", text(rope_scaling={"rope_type": "yarn", "factor": 4.0}))
model_dir("moe_out_of_range", text(moe_layers=[0, 7]))
c = json.loads(json.dumps(cfg)); c["text_config"] = [1, 2]; model_dir("text_config_list", c)
w = dict(weights); del w["language_model.model.layers.3.feed_forward.experts.down_proj"]
model_dir("no_experts", w=w)
w = dict(weights)
k = "language_model.model.layers.1.feed_forward.experts.gate_up_proj"
w[k] = weights[k][:, :, :40].copy()
model_dir("experts_shape", w=w)

e = dict(ev); e["input_ids"] = ev["input_ids"].copy(); e["input_ids"][2, 7] = 50
st.save(os.path.join(out, "e_big_id.safetensors"), e, emeta)
e = dict(ev); e["input_ids"] = ev["input_ids"].astype(np.float32)
st.save(os.path.join(out, "e_float_ids.safetensors"), e, emeta)
e = dict(ev); e["input_ids"] = ev["input_ids"].reshape(-1)
del e["logits"], e["logits_llama4_fp8"], e["logits_llama4_int4"]
st.save(os.path.join(out, "e_flat_ids.safetensors"), e, emeta)
m = dict(emeta); m["scored_from"] = "13"
st.save(os.path.join(out, "e_scored.safetensors"), ev, m)
EOF
    echo "FAIL setup: could not build the broken inputs"
    echo "0 passed, 1 failed"
    exit 1
fi

cf=config.json
expect_fail cfg_missing_hidden   "hidden_size"   'missing|required'            infer --model "$T/m_no_hidden"
expect_fail cfg_text_config_list "text_config"   'object|must'                 infer --model "$T/m_text_config_list"
expect_fail cfg_rope_yarn        "yarn"          'not supported|unsupported'   infer --model "$T/m_rope_yarn"
expect_fail cfg_moe_layers_range "moe_layers"    'integer in|range|0\.\.3'     infer --model "$T/m_moe_out_of_range"
expect_fail seq_too_long         "max_position_embeddings" 'more than|longer|exceed' infer --model "$T/m_short_positions"
expect_fail experts_missing      "experts.down_proj" 'missing|no tensor|not found' infer --model "$T/m_no_experts"
expect_fail experts_shape        "experts.gate_up_proj" 'shape'               infer --model "$T/m_experts_shape"
expect_fail eval_wrong_model_cnn "input_ids"     'missing|no tensor|not found' infer --model "$MM" --data "$ROOT/models/fmnist-lenet/eval.safetensors"
expect_fail eval_wrong_model_llm "input_ids"     'vocabulary|outside|more than' infer --model "$MM" --data "$B/eval.safetensors"
expect_fail eval_wrong_model_ref "logits"        'must|\[5, 13, 260\]'         infer --model "$B" --data "$MM/eval.safetensors"
expect_fail eval_token_id_vocab  "input_ids"     'vocabulary|outside|50'       infer --model "$MM" --data "$T/e_big_id.safetensors"
expect_fail eval_token_id_sweep  "input_ids"     'vocabulary|outside|50'       sweep --model "$MM" --data "$T/e_big_id.safetensors" --trials 1
expect_fail eval_float_ids       "input_ids"     'I64|I32|F32|dtype'           infer --model "$MM" --data "$T/e_float_ids.safetensors"
expect_fail eval_flat_ids        "input_ids"     'I64|I32|\[N, tokens\]|shape' infer --model "$MM" --data "$T/e_flat_ids.safetensors"
expect_fail eval_scored_from     "scored_from"   'expected|position|0\.\.12'   infer --model "$MM" --data "$T/e_scored.safetensors"
expect_fail packaging_on_lenet   "llama4-fp8"    'not a packaging|lenet'       infer --model "$ROOT/models/fmnist-lenet" --format llama4-fp8
expect_fail sweep_by_bogus       "--by"          'target or component|bogus'   sweep --model "$MM" --trials 1 --by bogus

summary
