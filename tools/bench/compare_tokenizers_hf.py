#!/usr/bin/env python3
"""Single-thread encode throughput of tessera's tokenizer vs HF `tokenizers` (Rust), same text, same
tokenizer.json files, in one run on one machine; also checks that both give identical ids.

    # here (has /usr/share/common-licenses): build the static driver and the ~4 MB text once
    g++ -std=c++20 -O3 -march=x86-64-v3 -static -I include tools/bench/tokenizer_throughput.cpp \\
        -o out/tokenizer_throughput -lpcre2-8 -lutf8proc
    tools/bench/compare_tokenizers_hf.py --make-text out/mixed_4MB.txt
    # where `tokenizers` is installed (the device: run with carry ["out"])
    tools/bench/compare_tokenizers_hf.py --exe out/tokenizer_throughput --text out/mixed_4MB.txt --out $OUT

The text is built as bench_tokenizer's mixed_text() (licence prose + llama.cpp's multilingual test
strings, repeated to >= 4 MiB). Tokenizers: every tests/data/tokenizers_hf/*/tokenizer.json, loaded
by `tokenizers.Tokenizer.from_file` and by tessera from the same folder; add_special_tokens=False.
Modes (best of --reps each, wall time, the process pinned to one CPU and RAYON_NUM_THREADS=1):
  whole: one encode(text) call on the whole text; HF `encode` (computes offsets, as users get them)
         and HF `encode_batch_fast([text])` (no offsets, closer to what tessera computes).
  lines: the text split after each '\\n'; tessera encodes each line in a loop, HF `encode_batch`
         / `encode_batch_fast` on the list of lines (single-threaded here).
The real GGUF vocabularies of tests/data/tokenizers are also timed, tessera only (HF can't load GGUF).
"""
import argparse
import array
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

# before `import tokenizers`: no rayon thread pool beyond one thread
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LICENCES = ["GPL-3", "Apache-2.0", "LGPL-2.1", "MPL-2.0"]


def make_text(path):
    prose = b"".join(open(f"/usr/share/common-licenses/{n}", "rb").read() for n in LICENCES)
    intl = open(os.path.join(ROOT, "tests/data/tokenizers/ggml-vocab-gpt-2.gguf.inp"), "rb").read()
    out = b""
    while len(out) < (4 << 20):
        out += prose + intl
    with open(path, "wb") as f:
        f.write(out)
    print(f"wrote {path}: {len(out)} bytes")


def split_lines(text):
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


def run_tessera(exe, text_path, tokenizers, mode, reps, ids_dir):
    cmd = [exe, "--reps", str(reps), "--ids-dir", ids_dir] + (["--lines"] if mode == "lines" else [])
    out = subprocess.run(cmd + [text_path] + tokenizers, check=True, capture_output=True, text=True).stdout
    res = {}
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        f = line.split()
        res[f[0]] = {"bytes": int(f[1]), "tokens": int(f[2]), "s": float(f[3]), "mbs": float(f[4]), "hash": f[5]}
    return res


def best_of(reps, fn, cap_s=30.0):
    """Best wall time of `reps` calls; stops early once the calls took cap_s together (>= 1 call)."""
    best, result, total = float("inf"), None, 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t0
        best, total = min(best, dt), total + dt
        if total > cap_s:
            print(f"# stopped after {_ + 1} calls ({total:.1f} s)", flush=True)
            break
    return best, result


def concat_ids(encodings):
    ids = array.array("i")
    for e in encodings:
        ids.extend(e.ids)
    return ids


def compare(ours, theirs):
    """(mismatching positions + length difference, first differing index or None)."""
    n = min(len(ours), len(theirs))
    diff = [i for i in range(n) if ours[i] != theirs[i]]
    first = diff[0] if diff else (n if len(ours) != len(theirs) else None)
    return len(diff) + abs(len(ours) - len(theirs)), first


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--make-text", help="write the ~4 MB mixed text to this path and exit")
    ap.add_argument("--exe", default=os.path.join(ROOT, "out/tokenizer_throughput"))
    ap.add_argument("--text", default=os.path.join(ROOT, "out/mixed_4MB.txt"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    ap.add_argument("--out", help="folder for results.json and results.md")
    args = ap.parse_args()
    if args.make_text:
        return make_text(args.make_text)

    cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
    try:
        os.sched_setaffinity(0, {cpu})  # inherited by the tessera subprocess
    except OSError as e:
        print(f"# could not pin to CPU {cpu}: {e}")
    import tokenizers

    text_bytes = open(args.text, "rb").read()
    text = text_bytes.decode("utf-8", errors="replace")
    lines = split_lines(text)
    folders = sorted(glob.glob(os.path.join(ROOT, "tests/data/tokenizers_hf/*/tokenizer.json")))
    names = [os.path.basename(os.path.dirname(f)) for f in folders]
    ggufs = sorted(glob.glob(os.path.join(ROOT, "tests/data/tokenizers/*.gguf")))
    print(f"# tokenizers {tokenizers.__version__}, pinned to CPU {cpu}, affinity {sorted(os.sched_getaffinity(0))}, "
          f"text {len(text_bytes)} bytes, {len(lines)} lines, reps {args.reps}", flush=True)

    results = {"tokenizers_version": tokenizers.__version__, "bytes": len(text_bytes), "lines": len(lines),
               "reps": args.reps, "cpu": cpu, "modes": {}}
    has_fast = hasattr(tokenizers.Tokenizer, "encode_batch_fast")
    md = []
    with tempfile.TemporaryDirectory() as ids_dir:
        for mode in ("whole", "lines"):
            tess = run_tessera(args.exe, args.text, folders, mode, args.reps, ids_dir)
            rows = {}
            for name, path in zip(names, folders):
                tk = tokenizers.Tokenizer.from_file(path)
                if mode == "whole":
                    hf_s, enc = best_of(args.reps, lambda: tk.encode(text, add_special_tokens=False))
                    hf_ids = array.array("i", enc.ids)
                    fast = (lambda: tk.encode_batch_fast([text], add_special_tokens=False)) if has_fast else None
                else:
                    hf_s, encs = best_of(args.reps, lambda: tk.encode_batch(lines, add_special_tokens=False))
                    hf_ids = concat_ids(encs)
                    fast = (lambda: tk.encode_batch_fast(lines, add_special_tokens=False)) if has_fast else None
                fast_s, fast_encs = best_of(args.reps, fast) if fast else (None, None)
                ours = array.array("i")
                with open(os.path.join(ids_dir, name + ".ids"), "rb") as f:
                    ours.frombytes(f.read())
                mism, first = compare(ours, hf_ids)
                if first is not None:  # show where: ids around the first difference and the text they cover
                    lo = max(0, first - 5)
                    print(f"# {mode} {name}: first difference at {first}: tessera {list(ours[lo:first + 5])} "
                          f"HF {list(hf_ids[lo:first + 5])} text {tk.decode(list(hf_ids[lo:first + 5]))!r}")
                if fast_encs is not None and concat_ids(fast_encs) != hf_ids:
                    print(f"# {mode} {name}: encode_batch_fast ids differ from encode ids")
                r = dict(tessera_mbs=tess[name]["mbs"], tessera_tokens=len(ours), hf_tokens=len(hf_ids),
                         hf_mbs=len(text_bytes) / hf_s / 1e6,
                         hf_fast_mbs=(len(text_bytes) / fast_s / 1e6) if fast_s else None,
                         mismatches=mism, first_mismatch=first)
                rows[name] = r
                print(f"{mode} {name}: {json.dumps(r)}", flush=True)
            results["modes"][mode] = rows
            hf_call, hf_fast = ("encode(text)", "encode_batch_fast([text])") if mode == "whole" else \
                ("encode_batch(lines)", "encode_batch_fast(lines)")
            md += [f"\n{mode}: " + ("one encode() call on the whole text" if mode == "whole" else
                                    "line by line (tessera: encode() per line; HF: one batch call, one thread)"),
                   f"| tokenizer | tessera MB/s | HF {hf_call} MB/s | ratio | HF {hf_fast} MB/s "
                   f"| ratio | tokens | ids identical |", "|---|---|---|---|---|---|---|---|"]
            for name, r in rows.items():
                fast = f"{r['hf_fast_mbs']:.2f} | {r['tessera_mbs'] / r['hf_fast_mbs']:.2f}x" if r["hf_fast_mbs"] else "- | -"
                same = "yes" if r["mismatches"] == 0 else f"no ({r['mismatches']} differ, first at {r['first_mismatch']})"
                md.append(f"| {name} | {r['tessera_mbs']:.2f} | {r['hf_mbs']:.2f} | {r['tessera_mbs'] / r['hf_mbs']:.2f}x "
                          f"| {fast} | {r['tessera_tokens']} | {same} |")
        gg = run_tessera(args.exe, args.text, ggufs, "whole", args.reps, ids_dir)
        results["tessera_gguf_whole"] = gg
        md += ["\ntessera only, real GGUF vocabularies, whole text:", "| tokenizer | tessera MB/s | tokens |", "|---|---|---|"]
        md += [f"| {n} | {r['mbs']:.2f} | {r['tokens']} |" for n, r in gg.items()]
    print("\n".join(md))
    if args.out:
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(args.out, "results.md"), "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
