#!/usr/bin/env bash
# cli_bad_input.sh PVF REPO_ROOT - pvf on broken models, eval sets and flags.
#
# Every case must fail cleanly: exit 1 or 2 (never a signal), no stdout, and
# exactly one line on stderr that starts with "pvf ", names the file or flag
# at fault and says what is wrong (a word of the cause), with no sanitizer
# report. The broken inputs are built in a temp dir from models/fmnist-lenet,
# each damaged in one way. PVF_TEST_VERBOSE=1 shows each exit code and stderr.
source "$(dirname "$0")/lib_cli.sh" cli_bad_input.sh "$@"
SRC=$ROOT/models/fmnist-lenet

# ---- build the broken inputs ----------------------------------------------
# Model dirs: $T/m_NAME (config.json + model.safetensors, eval set linked);
# eval sets: $T/e_NAME.safetensors.
if ! PYTHONPATH="$ROOT/tools" "$PY" - "$SRC" "$T" <<'EOF'; then
import json, os, shutil, struct, sys
import numpy as np
import safetensors_io as st

src, out = sys.argv[1], sys.argv[2]
SIZE = {"F32": 4, "I64": 8}

def raw_header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def write_raw(path, header, data, hlen=None):
    """Writes header and data as given: no checks, so it can lie."""
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h) if hlen is None else hlen))
        f.write(h)
        f.write(data)

def model_dir(name, config=True, weights=True):
    d = os.path.join(out, "m_" + name)
    os.makedirs(d)
    if config:
        shutil.copy(os.path.join(src, "config.json"), d)
    if weights:
        shutil.copy(os.path.join(src, "model.safetensors"), d)
    os.symlink(os.path.join(os.path.abspath(src), "eval.safetensors"),
               os.path.join(d, "eval.safetensors"))
    return d

st_path = os.path.join(src, "model.safetensors")
blob = open(st_path, "rb").read()
header, data = raw_header(st_path)
weights, meta = st.load(st_path)

# --- model.safetensors: truncated / too short / empty
open(os.path.join(model_dir("trunc_half", weights=False), "model.safetensors"), "wb").write(blob[:len(blob) // 2])
open(os.path.join(model_dir("trunc_4", weights=False), "model.safetensors"), "wb").write(blob[:4])
open(os.path.join(model_dir("empty", weights=False), "model.safetensors"), "wb").close()

# --- header length field larger than the file
with open(os.path.join(model_dir("hdr_len"), "model.safetensors"), "r+b") as f:
    f.write(struct.pack("<Q", len(blob) + 4096))

# --- header that is not JSON (same length, so only the JSON is wrong)
n = struct.unpack("<Q", blob[:8])[0]
bad = b'{"conv1.bias": {"dtype": "F32", ' + b"oops"
bad += b" " * (n - len(bad))
open(os.path.join(model_dir("hdr_json", weights=False), "model.safetensors"), "wb").write(blob[:8] + bad + data)

# --- data_offsets lie: conv1.bias claims 7 floats in a 24-byte span
h = json.loads(json.dumps(header))
h["conv1.bias"]["shape"] = [7]
write_raw(os.path.join(model_dir("offsets_lie", weights=False), "model.safetensors"), h, data)

# --- offsets beyond the end: fc3.weight points past the data buffer
h = json.loads(json.dumps(header))
b, e = h["fc3.weight"]["data_offsets"]
h["fc3.weight"]["data_offsets"] = [b + (1 << 20), e + (1 << 20)]
write_raw(os.path.join(model_dir("offsets_beyond", weights=False), "model.safetensors"), h, data)
h["fc3.weight"]["data_offsets"] = [1 << 62, (1 << 62) + (e - b)]
write_raw(os.path.join(model_dir("offsets_huge", weights=False), "model.safetensors"), h, data)

# --- header length 2^64 - 1 (must not wrap around); a negative dimension
with open(os.path.join(model_dir("hdr_len_max"), "model.safetensors"), "r+b") as f:
    f.write(struct.pack("<Q", (1 << 64) - 1))
h = json.loads(json.dumps(header))
h["conv1.bias"]["shape"] = [-6]
write_raw(os.path.join(model_dir("neg_dim", weights=False), "model.safetensors"), h, data)

# --- two tensors overlap: conv2.bias shares bytes with conv1.weight (no hole:
# its own block is cut out of the buffer)
h = json.loads(json.dumps(header))
b, e = h["conv2.bias"]["data_offsets"]
cut = e - b
d2 = data[:b] + data[e:]
for k, v in h.items():
    if k != "__metadata__" and v["data_offsets"][0] >= e:
        v["data_offsets"] = [v["data_offsets"][0] - cut, v["data_offsets"][1] - cut]
h["conv2.bias"]["data_offsets"] = [24, 24 + cut]
write_raw(os.path.join(model_dir("overlap", weights=False), "model.safetensors"), h, d2)

# --- a hole: 16 unused bytes between fc1.bias and fc1.weight
h = json.loads(json.dumps(header))
b, e = h["fc1.weight"]["data_offsets"]
d2 = data[:b] + b"\0" * 16 + data[b:]
for k, v in h.items():
    if k != "__metadata__" and v["data_offsets"][0] >= b:
        v["data_offsets"] = [v["data_offsets"][0] + 16, v["data_offsets"][1] + 16]
write_raw(os.path.join(model_dir("hole", weights=False), "model.safetensors"), h, d2)

# --- a required tensor missing
w = dict(weights); del w["fc2.bias"]
st.save(os.path.join(model_dir("missing_tensor", weights=False), "model.safetensors"), w, meta)

# --- a tensor of the wrong shape
w = dict(weights); w["fc1.weight"] = weights["fc1.weight"][:, :399].copy()
st.save(os.path.join(model_dir("wrong_shape", weights=False), "model.safetensors"), w, meta)

# --- an unknown dtype tag
h = json.loads(json.dumps(header))
h["conv1.bias"]["dtype"] = "F33"
write_raw(os.path.join(model_dir("dtype_f33", weights=False), "model.safetensors"), h, data)

# --- weights stored as I64
w = dict(weights); w["fc1.weight"] = (weights["fc1.weight"] * 1000).astype(np.int64)
st.save(os.path.join(model_dir("dtype_i64", weights=False), "model.safetensors"), w, meta)

# --- config.json damaged
cfg = json.load(open(os.path.join(src, "config.json")))
def write_config(name, text):
    open(os.path.join(model_dir(name, config=False), "config.json"), "w").write(text)
write_config("cfg_json", json.dumps(cfg)[:-40])
c = dict(cfg); c["model_type"] = "resnet"; write_config("cfg_arch", json.dumps(c))
c = dict(cfg); del c["hidden_sizes"]; write_config("cfg_missing", json.dumps(c))
c = dict(cfg); c["conv_channels"] = "six"; write_config("cfg_type", json.dumps(c))
c = dict(cfg); c["image_size"] = 4; write_config("cfg_geometry", json.dumps(c))

# --- no weights at all; an index naming a shard that is not there
model_dir("no_weights", weights=False)
d = model_dir("index_missing_shard", weights=False)
json.dump({"metadata": {"total_size": len(data)},
           "weight_map": {k: "model-00001-of-00002.safetensors" if k.startswith("conv")
                          else "model-00002-of-00002.safetensors"
                          for k in weights}},
          open(os.path.join(d, "model.safetensors.index.json"), "w"))
shutil.copy(st_path, os.path.join(d, "model-00001-of-00002.safetensors"))
d = model_dir("index_escape", weights=False)
json.dump({"weight_map": {k: "../model.safetensors" for k in weights}},
          open(os.path.join(d, "model.safetensors.index.json"), "w"))

# --- eval sets
ev_path = os.path.join(src, "eval.safetensors")
ev, emeta = st.load(ev_path)
def eval_set(name, tensors):
    st.save(os.path.join(out, "e_" + name + ".safetensors"), tensors, emeta)
e = dict(ev); del e["pixel_values"]; eval_set("no_px", e)
e = dict(ev); e["pixel_values"] = ev["pixel_values"][:, :, :27, :27].copy(); eval_set("px27", e)
e = dict(ev); e["pixel_values"] = ev["pixel_values"].astype(np.int64); eval_set("px_int", e)
e = dict(ev); e["labels"] = ev["labels"][:999].copy(); eval_set("short_lab", e)
e = {k: v[:0].copy() for k, v in ev.items()}; eval_set("zero_rows", e)
e = dict(ev); e["logits"] = ev["logits"][:, :9].copy(); eval_set("ref9", e)
eb = open(ev_path, "rb").read()
open(os.path.join(out, "e_trunc.safetensors"), "wb").write(eb[:len(eb) // 2])
EOF
    echo "FAIL setup: could not build the broken inputs"
    echo "0 passed, 1 failed"
    exit 1
fi

# expect_fail: lib_cli.sh

M=$SRC
mf=model.safetensors
cf=config.json

# ---- model.safetensors ----------------------------------------------------
expect_fail st_truncated_half   "$mf" 'truncat|short|end|size|beyond|past|bytes'  infer --model "$T/m_trunc_half"
expect_fail st_only_4_bytes     "$mf" 'truncat|short|small|size|bytes|header'     infer --model "$T/m_trunc_4"
expect_fail st_empty            "$mf" 'empty|truncat|short|small|size|bytes'      infer --model "$T/m_empty"
expect_fail st_header_too_long  "$mf" 'header|length|size|larger|exceed|beyond|truncat' infer --model "$T/m_hdr_len"
expect_fail st_header_bad_json  "$mf" 'json|header|invalid|parse|syntax|expect|end'  infer --model "$T/m_hdr_json"
expect_fail st_offsets_lie      "$mf" 'offset|size|span|shape|bytes|match'         infer --model "$T/m_offsets_lie"
expect_fail st_offsets_beyond   "$mf" 'offset|beyond|end|past|outside|exceed|bounds|size|hole' infer --model "$T/m_offsets_beyond"
expect_fail st_offsets_huge     "$mf" 'offset|beyond|end|past|outside|exceed|bounds|size' infer --model "$T/m_offsets_huge"
expect_fail st_header_len_max   "$mf" 'header|length|limit|large|exceed|truncat'  infer --model "$T/m_hdr_len_max"
expect_fail st_negative_dim     "$mf" 'negative|shape|dim'                         infer --model "$T/m_neg_dim"
expect_fail st_overlap          "$mf" 'overlap'                                    infer --model "$T/m_overlap"
expect_fail st_hole             "$mf" 'hole|gap|contiguous|unused'                 infer --model "$T/m_hole"
expect_fail st_missing_tensor   "fc2.bias"   'missing|no tensor|not found|no such|lacks' infer --model "$T/m_missing_tensor"
expect_fail st_wrong_shape      "fc1.weight" 'shape'                               infer --model "$T/m_wrong_shape"
expect_fail st_dtype_unknown    "F33"        'dtype|type'                          infer --model "$T/m_dtype_f33"
expect_fail st_dtype_i64        "fc1.weight" 'dtype|I64|type'                      infer --model "$T/m_dtype_i64"
expect_fail st_wrong_shape_sweep "fc1.weight" 'shape'                              sweep --model "$T/m_wrong_shape" --trials 1
expect_fail st_overlap_inject   "$mf" 'overlap'  inject --model "$T/m_overlap" --tensor fc1.weight --index 0 --bit 3

# ---- config.json ------------------------------------------------------------
expect_fail cfg_invalid_json    "$cf" 'json|line|invalid|parse|syntax|expect|end|eof' infer --model "$T/m_cfg_json"
expect_fail cfg_unknown_arch    "resnet" 'unknown|unsupported|architecture'        infer --model "$T/m_cfg_arch"
expect_fail cfg_missing_field   "hidden_sizes" 'missing|required|no '              infer --model "$T/m_cfg_missing"
expect_fail cfg_wrong_type      "conv_channels" 'must|array|integer|type|expected' infer --model "$T/m_cfg_type"
expect_fail cfg_bad_geometry    "$cf" 'fit|small|geometry|size|image'              infer --model "$T/m_cfg_geometry"

# ---- model directory ------------------------------------------------------
expect_fail dir_no_weights      "$mf" 'no such|missing|not found|cannot|open|no model'      infer --model "$T/m_no_weights"
expect_fail dir_missing         "$T/no_such_model" 'no such|missing|not found|cannot|open|exist' infer --model "$T/no_such_model"
expect_fail index_missing_shard "model-00002-of-00002.safetensors" 'no such|missing|not found|cannot|open' infer --model "$T/m_index_missing_shard"
expect_fail index_shard_escapes  "model.safetensors.index.json" 'plain|directory|name|shard' infer --model "$T/m_index_escape"

# ---- eval set -------------------------------------------------------------
expect_fail eval_missing_file   "$T/no_such_eval.safetensors" 'no such|missing|not found|cannot|open|exist' infer --model "$M" --data "$T/no_such_eval.safetensors"
expect_fail eval_no_pixels      "pixel_values" 'missing|no tensor|not found|no such|lacks' infer --model "$M" --data "$T/e_no_px.safetensors"
expect_fail eval_pixels_shape   "pixel_values" 'shape|must|expected|takes|27'      infer --model "$M" --data "$T/e_px27.safetensors"
expect_fail eval_pixels_i64     "pixel_values" 'dtype|I64|F32|type'                infer --model "$M" --data "$T/e_px_int.safetensors"
expect_fail eval_labels_rows    "e_short_lab.safetensors" 'rows|999|1000|count|shape|match' infer --model "$M" --data "$T/e_short_lab.safetensors"
expect_fail eval_zero_rows      "e_zero_rows.safetensors" 'rows|empty|no eval|inputs|dimension|zero' infer --model "$M" --data "$T/e_zero_rows.safetensors"
expect_fail eval_reference_shape "logits"      'must|shape|F32|\[1000, 10\]'       infer --model "$M" --data "$T/e_ref9.safetensors"
expect_fail eval_truncated      "e_trunc.safetensors" 'truncat|short|end|size|beyond|past|bytes' infer --model "$M" --data "$T/e_trunc.safetensors"
expect_fail eval_no_pixels_sweep "pixel_values" 'missing|no tensor|not found|no such|lacks' sweep --model "$M" --data "$T/e_no_px.safetensors" --trials 1
expect_fail eval_no_pixels_inject "pixel_values" 'missing|no tensor|not found|no such|lacks' inject --model "$M" --data "$T/e_no_px.safetensors" --tensor fc1.weight --index 0 --bit 3

# ---- flags ----------------------------------------------------------------
expect_fail unknown_command     "frobnicate" 'unknown|command'                     frobnicate --model "$M"
expect_fail unknown_flag        "--colour"   'unknown|flag|option'                 infer --model "$M" --colour
expect_fail unknown_flag_sweep  "--colour"   'unknown|flag|option'                 sweep --model "$M" --trials 1 --colour
expect_fail format_nope         "--format"   'unknown|format|nope'                 infer --model "$M" --format nope
expect_fail format_nope_sweep   "--format"   'unknown|format|nope'                 sweep --model "$M" --trials 1 --format nope
expect_fail fault_nope          "--fault"    'unknown|fault|nope|model'            sweep --model "$M" --trials 1 --fault nope
expect_fail fault_kbit_1        "--fault"    'kbit|bits|least|range|2'             sweep --model "$M" --trials 1 --fault kbit:1
expect_fail fault_nope_inject   "--fault"    'unknown|fault|nope|model'            inject --model "$M" --tensor fc1.weight --index 0 --bit 3 --fault nope
expect_fail trials_zero         "--trials"   'integer|range|positive|least|0'      sweep --model "$M" --trials 0
expect_fail trials_abc          "--trials"   'integer|number|abc'                  sweep --model "$M" --trials abc
expect_fail seed_negative       "--seed"     'integer|negative|-1'                 sweep --model "$M" --trials 1 --seed -1
expect_fail missing_model_infer "--model"    'required|missing'                    infer
expect_fail missing_model_sweep "--model"    'required|missing'                    sweep --trials 1
expect_fail missing_model_inject "--model"   'required|missing'                    inject --tensor fc1.weight --index 0 --bit 3
expect_fail missing_value       "--model"    'value|argument|needs|requires'       infer --model
expect_fail missing_value_sweep "--trials"   'value|argument|needs|requires'       sweep --model "$M" --trials
expect_fail inject_no_tensor    "no.such"    'not|unknown|no such|target'          inject --model "$M" --tensor no.such --index 0 --bit 3
expect_fail inject_index_range  "--index"    'outside|range|elements|999999'       inject --model "$M" --tensor fc1.weight --index 999999 --bit 3
expect_fail inject_index_neg    "--index"    'integer|negative|-1'                 inject --model "$M" --tensor fc1.weight --index -1 --bit 3
expect_fail inject_bit_32       "--bit"      'bit|range|outside|0..31|32'          inject --model "$M" --tensor fc1.weight --index 0 --bit 32
expect_fail inject_burst_leaves "--bit"      'leaves|outside|word|width|range'     inject --model "$M" --tensor fc1.weight --index 0 --fault burst:8 --bit 28
expect_fail inject_fp16_bit_16  "--bit"      'outside|word|16-bit|width|range'     inject --model "$M" --format fp16 --tensor fc1.bias --index 0 --bit 16
expect_fail inject_int4_bit_4   "--bit"      'outside|word|4-bit|width|range'      inject --model "$M" --format int4 --tensor fc1.weight --index 0 --bit 4
expect_fail inject_kbit_count   "--bit"      'kbit|bits|needs'                     inject --model "$M" --tensor fc1.weight --index 0 --fault kbit:3 --bit 1,2
expect_fail inject_no_bit       "--bit"      'required|missing'                    inject --model "$M" --tensor fc1.weight --index 0
expect_fail sweep_fault_fits_nothing "--fault" 'fits|no selected|target'           sweep --model "$M" --format int8 --fault burst:9 --trials 1 --tensor fc1.weight
expect_fail inject_int8_bit_9   "--bit"      'outside|word|8-bit|width|range'      inject --model "$M" --format int8 --tensor fc1.weight --index 0 --bit 9
expect_fail sweep_no_tensor     "no.such"    'not|unknown|no such|target'          sweep --model "$M" --trials 1 --tensor no.such
expect_fail positional_infer    "stray"      'unexpected|argument|positional'      infer --model "$M" stray
expect_fail positional_sweep    "stray"      'unexpected|argument|positional'      sweep --model "$M" --trials 1 stray

# A full stdout must not pass for success: the results were lost.
if [ -w /dev/full ]; then
    STDOUT_TO=/dev/full expect_fail stdout_full "" 'write|output|stdout|space|full' infer --model "$M" --json
fi


# ---- DLRM and BERT: eval sets and configs of the new architectures -------
# Built from the small fixtures (fast); D: a DLRM, B: a BERT.
D=$ROOT/tests/fixtures/dlrm-dot-itself
B=$ROOT/tests/fixtures/bert-l4
if ! PYTHONPATH="$ROOT/tools" "$PY" - "$D" "$B" "$T" <<'EOF'; then
import json, os, shutil, sys
import numpy as np
import safetensors_io as st

dlrm, bert, out = sys.argv[1:4]
def eval_set(name, src, change):
    ev, meta = st.load(os.path.join(src, "eval.safetensors"))
    change(ev)
    st.save(os.path.join(out, "e_" + name + ".safetensors"), ev, meta)
def model(name, src, cfg_change=None, drop=None):
    d = os.path.join(out, "m_" + name)
    os.makedirs(d)
    cfg = json.load(open(os.path.join(src, "config.json")))
    if cfg_change:
        cfg_change(cfg)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    w, meta = st.load(os.path.join(src, "model.safetensors"))
    if drop:
        del w[drop]
    st.save(os.path.join(d, "model.safetensors"), w, meta)
    shutil.copy(os.path.join(src, "eval.safetensors"), d)

def setitem(k, v):
    def f(ev):
        ev[k] = v(ev)
    return f
def delitem(k):
    return lambda ev: ev.pop(k)
def poke(k, at, v):
    def f(ev):
        a = ev[k].copy(); a[at] = v; ev[k] = a
    return f

eval_set("d_no_offsets", dlrm, delitem("sparse_offsets"))
eval_set("d_no_indices", dlrm, delitem("sparse_indices"))
eval_set("d_off_beyond", dlrm, poke("sparse_offsets", (8, 3), 10 ** 6))
eval_set("d_off_decrease", dlrm, poke("sparse_offsets", (4, 1), 0))
eval_set("d_off_f32", dlrm, setitem("sparse_offsets", lambda ev: ev["sparse_offsets"].astype(np.float32)))
eval_set("d_off_cols", dlrm, setitem("sparse_offsets", lambda ev: ev["sparse_offsets"][:, :3].copy()))
eval_set("d_id_big", dlrm, poke("sparse_indices", -1, 100))
eval_set("d_id_neg", dlrm, poke("sparse_indices", 0, -1))
eval_set("d_dense_width", dlrm, setitem("dense_x", lambda ev: ev["dense_x"][:, :5].copy()))
model("d_top_size", dlrm, lambda c: c.update(arch_mlp_top=[9, 8, 1]))
model("d_op", dlrm, lambda c: c.update(arch_interaction_op="sum"))
model("d_no_table", dlrm, drop="emb_l.2.weight")

eval_set("b_id_big", bert, poke("input_ids", (2, 3), 120))
eval_set("b_too_long", bert, setitem("input_ids", lambda ev: np.zeros((6, 33), np.int64)))
eval_set("b_mask_2", bert, poke("attention_mask", (1, 1), 2))
eval_set("b_mask_shape", bert, setitem("attention_mask", lambda ev: ev["attention_mask"][:, :8].copy()))
eval_set("b_type_big", bert, poke("token_type_ids", (0, 0), 2))
eval_set("b_ids_f32", bert, setitem("input_ids", lambda ev: ev["input_ids"].astype(np.float32)))
model("b_act", bert, lambda c: c.update(hidden_act="relu"))
model("b_heads", bert, lambda c: c.update(num_attention_heads=3))
model("b_no_cls", bert, drop="classifier.bias")
EOF
    fail setup_models "could not build the broken DLRM and BERT inputs"
fi
L=$ROOT/models/fmnist-lenet
expect_fail dlrm_eval_of_lenet  "dense_x"        'missing'                             infer --model "$D" --data "$L/eval.safetensors"
expect_fail dlrm_eval_of_bert   "dense_x"        'missing'                             infer --model "$D" --data "$B/eval.safetensors"
expect_fail bert_eval_of_dlrm   "input_ids"      'missing'                             infer --model "$B" --data "$D/eval.safetensors"
expect_fail lenet_eval_of_bert  "pixel_values"   'missing'                             infer --model "$L" --data "$B/eval.safetensors"
expect_fail dlrm_no_offsets     "sparse_offsets" 'missing'                             infer --model "$D" --data "$T/e_d_no_offsets.safetensors"
expect_fail dlrm_no_indices     "sparse_indices" 'missing'                             infer --model "$D" --data "$T/e_d_no_indices.safetensors"
expect_fail dlrm_offset_beyond  "sparse_offsets" 'out of range|1000000'                infer --model "$D" --data "$T/e_d_off_beyond.safetensors"
expect_fail dlrm_offset_order   "sparse_offsets" 'out of range|decrease'               sweep --model "$D" --data "$T/e_d_off_decrease.safetensors" --trials 1
expect_fail dlrm_offset_dtype   "sparse_offsets" 'I64|I32|F32'                         infer --model "$D" --data "$T/e_d_off_f32.safetensors"
expect_fail dlrm_offset_columns "sparse_offsets" 'columns|tables'                      infer --model "$D" --data "$T/e_d_off_cols.safetensors"
expect_fail dlrm_id_too_big     "emb_l.3.weight" 'outside|rows'                        infer --model "$D" --data "$T/e_d_id_big.safetensors"
expect_fail dlrm_id_negative    "sparse_indices" 'outside|rows|-1'                     inject --model "$D" --data "$T/e_d_id_neg.safetensors" --tensor emb_l.0.weight --index 0 --bit 3
expect_fail dlrm_dense_width    "dense_x"        'takes|\[N, 6\]'                      infer --model "$D" --data "$T/e_d_dense_width.safetensors"
expect_fail dlrm_cfg_top_size   "arch_mlp_top"   'interaction|starts'                  infer --model "$T/m_d_top_size"
expect_fail dlrm_cfg_op         "arch_interaction_op" 'dot|cat|must'                   infer --model "$T/m_d_op"
expect_fail dlrm_missing_table  "emb_l.2.weight" 'missing|no tensor|not found|no such' infer --model "$T/m_d_no_table"
expect_fail bert_id_too_big     "input_ids"      'outside|vocabulary|120'              infer --model "$B" --data "$T/e_b_id_big.safetensors"
expect_fail bert_too_long       "input_ids"      'max_position_embeddings|33'          infer --model "$B" --data "$T/e_b_too_long.safetensors"
expect_fail bert_mask_value     "attention_mask" 'outside|mask'                        infer --model "$B" --data "$T/e_b_mask_2.safetensors"
expect_fail bert_mask_shape     "attention_mask" 'must|length|\[N'                     infer --model "$B" --data "$T/e_b_mask_shape.safetensors"
expect_fail bert_type_too_big   "token_type_ids" 'outside|type_vocab_size'             sweep --model "$B" --data "$T/e_b_type_big.safetensors" --trials 1
expect_fail bert_ids_f32        "input_ids"      'I64|I32|F32'                         infer --model "$B" --data "$T/e_b_ids_f32.safetensors"
expect_fail bert_cfg_act        "hidden_act"     'gelu|supported'                      infer --model "$T/m_b_act"
expect_fail bert_cfg_heads      "num_attention_heads" 'multiple'                       infer --model "$T/m_b_heads"
expect_fail bert_missing_tensor "classifier.bias" 'missing|no tensor|not found|no such' infer --model "$T/m_b_no_cls"
expect_fail threshold_on_lenet  "--threshold"    'dlrm|top-1'                          sweep --model "$L" --trials 1 --threshold 0.1
expect_fail threshold_range     "--threshold"    'number|\(0, 1\)'                     sweep --model "$D" --trials 1 --threshold 1.5
expect_fail threshold_abc       "--threshold"    'number|abc'                          inject --model "$D" --tensor emb_l.0.weight --index 0 --bit 3 --threshold abc
expect_fail sweep_by_nope       "--by"           'tensor|component|layer'             sweep --model "$D" --trials 1 --by nope

summary
