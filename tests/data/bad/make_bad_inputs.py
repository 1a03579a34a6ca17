#!/usr/bin/env python3
"""Writes the reproducers of issue 18 (files a user might download, each refused with a clean
error before anything large is allocated) into tests/data/bad/. tests/io/test_limits.cpp and
tests/cli/test_cli_limits.cpp feed them to the readers and to `tessera`. Deterministic; standard
library only; reuses the writers of tests/fuzz/make_seeds.py.
    python3 tests/data/bad/make_bad_inputs.py
"""
import json
import os
import struct
import sys

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "fuzz"))
import make_seeds as ms  # noqa: E402


def write(name, data):
    path = os.path.join(HERE, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def gguf_header(n_tensors, n_kv):
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


def llama_gguf_with(changes):
    """The fuzz seed's tiny llama GGUF with some metadata values replaced (key -> (type, value))."""
    data = ms.llama_gguf()
    # rebuild: parse back the kvs we wrote is overkill; write again with the values patched
    orig = ms.gguf_bytes
    def patched(kvs, tensors, alignment=32):
        kvs = [(k, *changes[k]) if k in changes else (k, t, v) for k, t, v in kvs]
        return orig(kvs, tensors, alignment)
    ms.gguf_bytes = patched
    try:
        ms.rng.seed(18)
        return ms.llama_gguf()
    finally:
        ms.gguf_bytes = orig


def main():
    # GGUF: counts and lengths far beyond the file
    write("gguf_2e40_tensors.gguf", gguf_header(1 << 40, 0) + b"\0" * 64)
    write("gguf_2e40_kv.gguf", gguf_header(0, 1 << 40) + b"\0" * 64)
    write("gguf_2e40_string.gguf", gguf_header(0, 1) + struct.pack("<Q", 1 << 40) + b"general.name" + b"\0" * 52)
    write("gguf_2e40_array.gguf", gguf_header(0, 1) + ms.g_str("tokenizer.ggml.tokens") +
          struct.pack("<IIQ", ms.T_ARR, ms.T_STR, 1 << 40) + b"\0" * 64)
    # a tensor whose element count overflows 64 bits, and one whose bytes lie past the end
    write("gguf_tensor_numel_overflow.gguf", gguf_header(1, 0) + ms.g_str("t") + struct.pack("<I", 2) +
          struct.pack("<QQ", 1 << 40, 1 << 40) + struct.pack("<IQ", 0, 0) + b"\0" * 32)
    write("gguf_tensor_past_end.gguf", gguf_header(1, 0) + ms.g_str("t") + struct.pack("<I", 2) +
          struct.pack("<QQ", 16, 16) + struct.pack("<IQ", 0, 0) + b"\0" * 32)
    # an empty tensor (a zero dim) claiming 2^60 rows: no bytes, but loops over its rows
    write("gguf_empty_tensor_2e60_rows.gguf", gguf_header(1, 0) + ms.g_str("t") + struct.pack("<I", 2) +
          struct.pack("<QQ", 0, 1 << 60) + struct.pack("<IQ", 0, 0) + b"\0" * 32)
    hdr = b'{"t":{"dtype":"F32","shape":[1152921504606846976,0],"data_offsets":[0,0]}}'
    write("st_empty_tensor_2e60_rows.safetensors", struct.pack("<Q", len(hdr)) + hdr)
    # metadata sizes: a huge block count, context_length 0
    write("gguf_block_count_1e9.gguf", llama_gguf_with({"llama.block_count": (ms.T_U32, 1000000000)}))
    write("gguf_block_count_2e40.gguf", llama_gguf_with({"llama.block_count": (ms.T_U64, 1 << 40)}))
    write("gguf_context_length_0.gguf", llama_gguf_with({"llama.context_length": (ms.T_U32, 0)}))
    # safetensors: overlapping offsets, a byte size overflowing 64 bits, a name given twice
    ms.rng.seed(18)
    write("st_overlap.safetensors", ms.st_bytes([("a", "F32", [4], [1.0] * 4), ("b", "F32", [4], [2.0] * 4)])
          .replace(b'"data_offsets":[16,32]', b'"data_offsets":[8,24]'))
    hdr = b'{"big":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}}'
    write("st_bytes_overflow.safetensors", struct.pack("<Q", len(hdr)) + hdr)
    hdr = b'{"big":{"dtype":"F64","shape":[100],"data_offsets":[0,0]}}'
    write("st_bytes_past_data.safetensors", struct.pack("<Q", len(hdr)) + hdr)
    hdr = (b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
           b'"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}')
    write("st_duplicate_name.safetensors", struct.pack("<Q", len(hdr)) + hdr + b"\0" * 12)
    # a checkpoint whose q_proj is I32: loaded, it would run on made-up numbers
    cfg, _ = ms.shrunk_checkpoint("llama")
    c = json.loads(cfg)
    h = ms.read_st_header(os.path.join(ms.DATA, "models", "llama", "model.safetensors"))
    changes, value_map, layers = ms.SHRINK["llama"]
    tensors = []
    for name in sorted(h, key=lambda n: h[n]["data_offsets"][0]):
        if ms.layer_of(name) >= layers:
            continue
        shape = [value_map.get(s, s) for s in h[name]["shape"]]
        if name.endswith("q_proj.weight"):
            tensors.append((name, "I32", shape, [1] * ms.numel(shape)))
        else:
            tensors.append((name, "F32", shape, [0.5] * ms.numel(shape)))
    write("int_weight/config.json", json.dumps(c, indent=1).encode())
    write("int_weight/model.safetensors", ms.st_bytes(tensors))
    # configs with absurd sizes (config.json only: refused before the weights are opened)
    base = json.loads(cfg)
    for name, change in [("config_hidden_2e40", {"hidden_size": 1 << 40}),
                         ("config_layers_1e9", {"num_hidden_layers": 1000000000}),
                         ("config_max_position_negative", {"max_position_embeddings": -5})]:
        d = dict(base)
        d.update(change)
        write(name + "/config.json", json.dumps(d, indent=1).encode())
    # a tokenizer.json whose added token id is 2^31 - 1 (the id table would take 64 GB)
    tj = json.loads(ms.small_tokenizer("wordpiece_bert", 300))
    tj["added_tokens"].append({"id": 2147483647, "content": "<huge>", "single_word": False, "lstrip": False,
                               "rstrip": False, "normalized": False, "special": True})
    write("tokenizer_added_id_2e31/tokenizer.json", json.dumps(tj).encode())


if __name__ == "__main__":
    main()
