#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from the test fixtures.

Small on purpose: libFuzzer's speed is inversely proportional to input size, so the model seeds
are the fixtures shrunk to a few KB (every dimension scaled down, one or two layers, random
weights), the tokenizer seeds are the fixtures' tokenizer.json with the vocabulary cut to a few
hundred entries, and the GGUF seeds are written here. Run from anywhere:
    python3 tests/fuzz/make_seeds.py
Deterministic (fixed seeds); standard library only.
"""
import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
SEP = b"\n--tessera-fuzz-part--\n"
rng = random.Random(18)


def out(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors -------------------------------------------------------------------------------
DT = {"F32": ("f", 4), "F16": ("e", 2), "F64": ("d", 8), "I64": ("q", 8), "I32": ("i", 4), "I16": ("h", 2),
      "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("B", 1)}


def st_bytes(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, values or raw bytes)."""
    header, blob = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, vals in tensors:
        if isinstance(vals, bytes):
            raw = vals
        else:
            fmt, _ = DT[dt]
            raw = struct.pack("<%d%s" % (len(vals), fmt), *vals)
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def rand_vals(shape, scale=0.3):
    return [rng.gauss(0, scale) for _ in range(numel(shape))]


def read_st_header(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return h


# ---- shrunk model checkpoints (loader) ------------------------------------------------------------
# family fixture -> (config changes, shape value map, layers kept)
SHRINK = {
    "llama": ({"hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
               "intermediate_size": 24, "vocab_size": 32, "num_hidden_layers": 1, "max_position_embeddings": 64},
              {24: 8, 72: 16, 100: 24, 160: 32}, 1),
    "qwen3": ({"hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
               "intermediate_size": 24, "vocab_size": 32, "num_hidden_layers": 1, "max_position_embeddings": 64},
              {16: 8, 32: 8, 48: 16, 64: 16, 96: 24, 160: 32}, 1),
    "gpt2": ({"n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 32, "n_layer": 1, "bos_token_id": 31,
              "eos_token_id": 31},
             {64: 16, 192: 48, 256: 64, 160: 32}, 1),
    "mamba": ({"hidden_size": 8, "intermediate_size": 16, "state_size": 4, "time_step_rank": 2, "vocab_size": 32,
               "num_hidden_layers": 1},
              {19: 10, 192: 32, 96: 16, 48: 8, 8: 4, 3: 2, 160: 32}, 1),
    "mamba2": ({"hidden_size": 16, "head_dim": 8, "num_heads": 4, "n_groups": 1, "state_size": 4, "vocab_size": 32,
                "num_hidden_layers": 1, "time_step_rank": 2},
               {328: 76, 192: 40, 128: 32, 64: 16, 8: 4, 160: 32}, 1),
    "jamba": ({"hidden_size": 8, "intermediate_size": 12, "mamba_d_state": 4, "mamba_dt_rank": 2,
               "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 32},
              {48: 8, 96: 16, 192: 32, 19: 10, 3: 2, 8: 4, 24: 4, 64: 12, 160: 32}, 4),
}


def layer_of(name):
    parts = name.split(".")
    for i, p in enumerate(parts[:-1]):
        if p in ("layers", "h") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return -1


def shrunk_checkpoint(family):
    changes, value_map, layers = SHRINK[family]
    cfg = json.load(open(os.path.join(DATA, "models", family, "config.json")))
    cfg.update(changes)
    if "layer_types" in cfg:
        cfg["layer_types"] = cfg["layer_types"][:layers]
    h = read_st_header(os.path.join(DATA, "models", family, "model.safetensors"))
    tensors = []
    for name in sorted(h, key=lambda n: h[n]["data_offsets"][0]):
        if layer_of(name) >= layers:
            continue
        shape = [value_map.get(s, s) for s in h[name]["shape"]]
        # the family name 'A_log' / norms: keep values sane so that prefill runs
        vals = [abs(v) + 0.5 for v in rand_vals(shape)] if ("norm" in name or "A_log" in name or name.endswith(".D")) else rand_vals(shape)
        tensors.append((name, "F32", shape, vals))
    return json.dumps(cfg, indent=1).encode(), st_bytes(tensors)


# ---- GGUF ---------------------------------------------------------------------------------------------
T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)


def g_str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


SCALAR = {T_U8: "B", T_I8: "b", T_U16: "H", T_I16: "h", T_U32: "I", T_I32: "i", T_F32: "f", T_BOOL: "B",
          T_U64: "Q", T_I64: "q", T_F64: "d"}


def g_val(t, v):
    if t == T_STR:
        return g_str(v)
    if t == T_ARR:
        et, items = v
        b = struct.pack("<IQ", et, len(items))
        for x in items:
            b += g_val(et, x)
        return b
    return struct.pack("<" + SCALAR[t], v)


GG = {"F32": (0, 1, 4), "F16": (1, 1, 2), "Q8_0": (8, 32, 34), "Q4_0": (2, 32, 18)}


def q8_0(vals):
    b = b""
    for i in range(0, len(vals), 32):
        blk = vals[i:i + 32]
        d = max(abs(x) for x in blk) / 127 or 1.0
        b += struct.pack("<e", d) + struct.pack("<32b", *[max(-127, min(127, round(x / d))) for x in blk])
    return b


def gguf_bytes(kvs, tensors, alignment=32):
    """kvs: list of (key, type, value); tensors: list of (name, type name, extents outermost-first, values)."""
    b = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        b += g_str(k) + struct.pack("<I", t) + g_val(t, v)
    datas, off = [], 0
    for name, ty, ext, vals in tensors:
        code, _, _ = GG[ty]
        if ty == "F32":
            raw = struct.pack("<%df" % len(vals), *vals)
        elif ty == "F16":
            raw = struct.pack("<%de" % len(vals), *vals)
        else:
            raw = q8_0(vals)
        ne = list(reversed(ext))
        b += g_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        b += struct.pack("<IQ", code, off)
        raw += b"\0" * ((alignment - len(raw) % alignment) % alignment)
        datas.append(raw)
        off += len(raw)
    b += b"\0" * ((alignment - len(b) % alignment) % alignment)
    return b + b"".join(datas)


def spm_vocab():
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % i for i in (0x0A, 0x20, 0x41, 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80)]
    toks += ["\u2581", "\u2581H", "el", "lo", "\u2581w", "or", "ld", "\u2581Hel", "\u2581Hello", "\u2581world", "e", "l",
             "o", "H", "w", "r", "d", "a", "b"]
    types = [2, 3, 3] + [6] * 9 + [1] * (len(toks) - 12)
    scores = [0.0] * 12 + [-float(i) for i in range(len(toks) - 12)]
    return toks, types, scores


def llama_gguf(with_model=True):
    toks, types, scores = spm_vocab()
    v, d, ff, hd = len(toks), 32, 32, 16
    kvs = [("general.architecture", T_STR, "llama"), ("general.name", T_STR, "fuzz-llama"),
           ("llama.embedding_length", T_U32, d), ("llama.block_count", T_U32, 1), ("llama.context_length", T_U32, 64),
           ("llama.attention.head_count", T_U32, 2), ("llama.attention.head_count_kv", T_U32, 1),
           ("llama.feed_forward_length", T_U32, ff), ("llama.rope.dimension_count", T_U32, hd),
           ("llama.attention.layer_norm_rms_epsilon", T_F32, 1e-5), ("llama.rope.freq_base", T_F32, 10000.0),
           ("tokenizer.ggml.model", T_STR, "llama"), ("tokenizer.ggml.tokens", T_ARR, (T_STR, toks)),
           ("tokenizer.ggml.scores", T_ARR, (T_F32, scores)), ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
           ("tokenizer.ggml.bos_token_id", T_U32, 1), ("tokenizer.ggml.eos_token_id", T_U32, 2),
           ("tokenizer.ggml.unknown_token_id", T_U32, 0), ("tokenizer.ggml.add_bos_token", T_BOOL, 1)]
    tensors = []
    if with_model:
        def t(name, ty, ext, norm=False):
            vals = rand_vals(ext)
            tensors.append((name, ty, ext, [abs(x) + 0.5 for x in vals] if norm else vals))
        t("token_embd.weight", "F32", [v, d])
        t("output_norm.weight", "F32", [d], True)
        t("output.weight", "F16", [v, d])
        t("blk.0.attn_norm.weight", "F32", [d], True)
        t("blk.0.attn_q.weight", "Q8_0", [2 * hd, d])
        t("blk.0.attn_k.weight", "F16", [hd, d])
        t("blk.0.attn_v.weight", "F32", [hd, d])
        t("blk.0.attn_output.weight", "Q8_0", [d, 2 * hd])
        t("blk.0.ffn_norm.weight", "F32", [d], True)
        t("blk.0.ffn_gate.weight", "F32", [ff, d])
        t("blk.0.ffn_up.weight", "F16", [ff, d])
        t("blk.0.ffn_down.weight", "Q8_0", [d, ff])
    return gguf_bytes(kvs, tensors)


def gpt2_vocab():
    # byte-level alphabet subset + a few merges
    base = ["!", "H", "e", "l", "o", "\u0120", "w", "r", "d", "a", "1", "2", "3", "<", ">", "s", "/"]
    merges = ["H e", "l l", "He ll", "Hell o", "\u0120 w", "o r", "\u0120w or", "l d", "\u0120wor ld"]
    toks = base + ["He", "ll", "Hell", "Hello", "\u0120w", "or", "\u0120wor", "ld", "\u0120world", "<|endoftext|>"]
    types = [1] * (len(toks) - 1) + [3]
    return toks, types, merges


def gpt2_gguf(with_model=True):
    toks, types, merges = gpt2_vocab()
    v, d, ctx = len(toks), 16, 16
    kvs = [("general.architecture", T_STR, "gpt2"), ("gpt2.embedding_length", T_U32, d), ("gpt2.block_count", T_U32, 1),
           ("gpt2.context_length", T_U32, ctx), ("gpt2.attention.head_count", T_U32, 2),
           ("gpt2.feed_forward_length", T_U32, 4 * d), ("gpt2.attention.layer_norm_epsilon", T_F32, 1e-5),
           ("tokenizer.ggml.model", T_STR, "gpt2"), ("tokenizer.ggml.pre", T_STR, "gpt-2"),
           ("tokenizer.ggml.tokens", T_ARR, (T_STR, toks)), ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
           ("tokenizer.ggml.merges", T_ARR, (T_STR, merges)), ("tokenizer.ggml.bos_token_id", T_U32, v - 1),
           ("tokenizer.ggml.eos_token_id", T_U32, v - 1)]
    tensors = []
    if with_model:
        def t(name, ext, norm=False):
            vals = rand_vals(ext)
            tensors.append((name, "F32", ext, [abs(x) + 0.5 for x in vals] if norm else vals))
        t("token_embd.weight", [v, d])
        t("position_embd.weight", [ctx, d])
        t("output_norm.weight", [d], True)
        t("output_norm.bias", [d])
        t("blk.0.attn_norm.weight", [d], True)
        t("blk.0.attn_norm.bias", [d])
        t("blk.0.attn_qkv.weight", [3 * d, d])
        t("blk.0.attn_qkv.bias", [3 * d])
        t("blk.0.attn_output.weight", [d, d])
        t("blk.0.attn_output.bias", [d])
        t("blk.0.ffn_norm.weight", [d], True)
        t("blk.0.ffn_norm.bias", [d])
        t("blk.0.ffn_up.weight", [4 * d, d])
        t("blk.0.ffn_up.bias", [4 * d])
        t("blk.0.ffn_down.weight", [d, 4 * d])
        t("blk.0.ffn_down.bias", [d])
    return gguf_bytes(kvs, tensors)


def bert_vocab_gguf():
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581hello", "\u2581world", "\u2581h", "ello", "!", "\u2581!",
            "\u25811", "2", "\u2581caf", "\u00e9"]
    types = [3, 2, 3, 3, 3] + [1] * (len(toks) - 5)
    kvs = [("general.architecture", T_STR, "bert"), ("tokenizer.ggml.model", T_STR, "bert"),
           ("tokenizer.ggml.tokens", T_ARR, (T_STR, toks)), ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
           ("tokenizer.ggml.cls_token_id", T_U32, 2), ("tokenizer.ggml.seperator_token_id", T_U32, 3),
           ("tokenizer.ggml.unknown_token_id", T_U32, 1), ("tokenizer.ggml.padding_token_id", T_U32, 0)]
    return gguf_bytes(kvs, [])


def t5_vocab_gguf():
    toks = ["<pad>", "</s>", "<unk>", "\u2581", "\u2581Hello", "\u2581world", "H", "e", "l", "o", "w", "r", "d", "!",
            "\u2581caf", "\u00e9", "<0x41>"]
    types = [3, 3, 2] + [1] * (len(toks) - 4) + [6]
    scores = [0.0, 0.0, 0.0] + [-1.0 - i * 0.5 for i in range(len(toks) - 3)]
    kvs = [("general.architecture", T_STR, "t5"), ("tokenizer.ggml.model", T_STR, "t5"),
           ("tokenizer.ggml.tokens", T_ARR, (T_STR, toks)), ("tokenizer.ggml.token_type", T_ARR, (T_I32, types)),
           ("tokenizer.ggml.scores", T_ARR, (T_F32, scores)), ("tokenizer.ggml.eos_token_id", T_U32, 1),
           ("tokenizer.ggml.unknown_token_id", T_U32, 2)]
    return gguf_bytes(kvs, [])


# ---- tokenizer.json, cut down ------------------------------------------------------------------------
def remap_ids(node, idmap):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "ids" and isinstance(v, list):
                node[k] = [idmap.get(x, x) for x in v]
            elif k == "id" and isinstance(v, int):
                node[k] = idmap.get(v, v)
            else:
                remap_ids(v, idmap)
    elif isinstance(node, list):
        for x in node:
            remap_ids(x, idmap)


def small_tokenizer(name, keep):
    j = json.load(open(os.path.join(DATA, "tokenizers_hf", name, "tokenizer.json")))
    m = j["model"]
    if m["type"] == "Unigram":
        m["vocab"] = m["vocab"][:keep]
        size = keep
    else:
        vocab = {t: i for t, i in m["vocab"].items() if i < keep}
        m["vocab"] = vocab
        size = keep
        if "merges" in m:
            kept = []
            for mg in m["merges"]:
                a, b = mg if isinstance(mg, list) else mg.split(" ", 1)
                if a in vocab and b in vocab and a + b in vocab:
                    kept.append(mg)
            m["merges"] = kept
    idmap, nxt = {}, size
    for a in j["added_tokens"]:
        if a["id"] >= keep:
            idmap[a["id"]] = nxt
            nxt += 1
    remap_ids(j["added_tokens"], idmap)
    remap_ids(j.get("post_processor"), idmap)
    return json.dumps(j, ensure_ascii=False, separators=(",", ":")).encode()


TEXTS = ["Hello world", "  leading spaces and\ttabs\nnew lines  ", "caf\u00e9 na\u00efve \u4e2d\u6587 \U0001F600",
         "<s>special</s> <|im_start|>x<|im_end|> [CLS] [MASK]", "12 345 6789 don't I'll", "\u00e9\u0301 \u212b \ufb01"]


def main():
    # loader: config.json + model.safetensors
    for fam in SHRINK:
        cfg, st = shrunk_checkpoint(fam)
        out("loader", fam, cfg + SEP + st)
        out("safetensors", fam, st)
    # config: every fixture's config.json, + generation_config.json
    for fam in sorted(os.listdir(os.path.join(DATA, "models"))):
        d = os.path.join(DATA, "models", fam)
        cfg = open(os.path.join(d, "config.json"), "rb").read()
        gen = os.path.join(d, "generation_config.json")
        out("config", fam, cfg + (SEP + open(gen, "rb").read() if os.path.exists(gen) else b""))
    # safetensors: every dtype, metadata, an empty tensor
    out("safetensors", "dtypes", st_bytes([
        ("f32", "F32", [2, 3], rand_vals([2, 3])), ("f16", "F16", [4], [0.5, -1.0, 2.0, 65504.0]),
        ("bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)), ("f64", "F64", [1], [3.5]),
        ("i64", "I64", [2], [1, -2]), ("i32", "I32", [2], [3, -4]), ("i16", "I16", [1], [5]), ("i8", "I8", [3], [1, 2, 3]),
        ("u8", "U8", [2], [7, 8]), ("b", "BOOL", [2], [0, 1]), ("empty", "F32", [0, 4], []),
        ("f8", "F8_E4M3", [2], b"\x38\x40")], {"format": "pt"}))
    # safetensors_index: index + 2 shards of the shrunk llama
    _, st = shrunk_checkpoint("llama")
    h = read_st_header_bytes(st)
    names = sorted(h)
    half = len(names) // 2
    shards = [[n for n in names[:half]], [n for n in names[half:]]]
    blobs = []
    for s in shards:
        blobs.append(st_bytes([(n, "F32", h[n]["shape"], rand_vals(h[n]["shape"])) for n in s]))
    index = {"metadata": {"total_size": 0},
             "weight_map": {n: "model-0000%d-of-00003.safetensors" % (1 + i) for i, s in enumerate(shards) for n in s}}
    out("safetensors_index", "llama_2_shards", json.dumps(index).encode() + SEP + blobs[0] + SEP + blobs[1] + SEP)
    # gguf (models) and gguf_tokenizer (vocabularies + texts)
    out("gguf", "llama", llama_gguf())
    out("gguf", "gpt2", gpt2_gguf())
    out("gguf", "quants_gguf_py", open(os.path.join(DATA, "gguf", "quants_gguf_py.gguf"), "rb").read())
    for name, g in [("llama", llama_gguf(False)), ("gpt2", gpt2_gguf(False)), ("bert", bert_vocab_gguf()), ("t5", t5_vocab_gguf())]:
        for k, text in enumerate(TEXTS[:3]):
            out("gguf_tokenizer", "%s_%d" % (name, k), g + SEP + text.encode())
    # tokenizer_json: the fixtures cut to a few hundred tokens, each with a few texts
    for name, keep in [("bpe_bytelevel_gpt2", 300), ("bpe_bytelevel_llama3", 300), ("spm_bpe_llama2", 400),
                       ("unigram_t5", 200), ("wordpiece_bert", 300)]:
        tj = small_tokenizer(name, keep)
        for k, text in enumerate(TEXTS):
            if k < 3 or name.startswith("spm"):
                out("tokenizer_json", "%s_%d" % (name, k), tj + SEP + text.encode())


def read_st_header_bytes(b):
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n])


if __name__ == "__main__":
    main()
