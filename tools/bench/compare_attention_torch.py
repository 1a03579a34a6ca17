#!/usr/bin/env python3
"""Causal softmax attention: tessera's bench_softmax_attention against PyTorch on the same shapes,
in the same run, with the same thread counts; prints GFLOP/s of both and the ratio.

PyTorch is Debian's python3-torch (1.13): torch.nn.functional._scaled_dot_product_attention with
is_causal=True (it materializes the l x l matrix). GFLOP/s counts the useful causal work,
4 * b * n_heads * head_dim * l (l + 1) / 2, for both.

usage: /usr/bin/python3 tools/bench/compare_attention_torch.py BUILD_DIR [--shapes 1x12x512x64,...]
       [--threads 1,2] [--repeats 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch


def flops(b, h, l, d):
    return 4.0 * b * h * d * l * (l + 1) / 2.0


def torch_gflops(b, h, l, d, threads, repeats):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.rand(b, h, l, d, generator=g) * 2 - 1 for _ in range(3))
    sdpa = torch.nn.functional._scaled_dot_product_attention
    with torch.no_grad():
        sdpa(q, k, v, None, 0.0, False, True)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            sdpa(q, k, v, None, 0.0, False, True)
            best = min(best, time.perf_counter() - t0)
    return flops(b, h, l, d) / best / 1e9


def tessera_gflops(build, shapes, threads):
    exe = os.path.join(build, "benchmarks", "attention", "bench_softmax_attention")
    names = "|".join(f"{s}/threads:{t}" for s in shapes for t in threads)
    out = subprocess.run([exe, f"--benchmark_filter=BM_softmax_attention/.*/({names})/",
                          "--benchmark_format=json"], check=True, capture_output=True, text=True,
                         env=dict(os.environ, TESSERA_BENCH_LONG="1")).stdout
    res = {}
    for bm in json.loads(out)["benchmarks"]:
        parts = bm["name"].split("/")
        res[(parts[2], int(parts[3].split(":")[1]))] = bm["GFLOP/s"]
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--shapes", default="1x12x512x64,1x12x2048x64,1x12x4096x64,1x8x4096x128")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    shapes = a.shapes.split(",")
    threads = [int(t) for t in a.threads.split(",")]
    ours = tessera_gflops(a.build, shapes, threads)
    print(f"{'shape (b x h x l x d)':<24}{'threads':>8}{'tessera GFLOP/s':>18}{'torch GFLOP/s':>16}{'ratio':>8}")
    for s in shapes:
        b, h, l, d = (int(x) for x in s.split("x"))
        for t in threads:
            theirs = torch_gflops(b, h, l, d, t, a.repeats)
            mine = ours.get((s, t), float("nan"))
            print(f"{s:<24}{t:>8}{mine:>18.1f}{theirs:>16.1f}{mine / theirs:>8.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
