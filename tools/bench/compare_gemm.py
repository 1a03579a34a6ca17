#!/usr/bin/env python3
"""Runs tessera's GEMM/GEMV benchmarks next to OpenBLAS and Eigen, in one run, and prints how
close each comes to this machine's measured limits (peak FMA GFLOP/s, memory read bandwidth).

    tools/bench/compare_gemm.py --build-dir build            # all shapes, 1 and 2 threads
    tools/bench/compare_gemm.py --build-dir build --quick    # m >= 128 and the large GEMV shapes

The build needs -DTESSERA_BUILD_BENCHMARKS=ON (targets bench_limits, bench_gemm, bench_gemv).
OpenBLAS runs with its AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX, overriding an environment that
forces Haswell) and, when Debian's libopenblas0-openmp is installed, its OpenMP build, so that its
threads and ours are the same OpenMP pool and never run at once. Every ratio printed compares runs
made back to back in the same process (bench_gemm runs ours, OpenBLAS and Eigen per shape in turn).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

OPENMP_BLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"


def run_bench(exe, bench_filter, min_time, repetitions, env):
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [exe, f"--benchmark_filter={bench_filter}", f"--benchmark_out={out}", "--benchmark_out_format=json",
           "--benchmark_format=console"]
    if min_time:
        cmd.append(f"--benchmark_min_time={min_time}")
    if repetitions > 1:
        cmd += [f"--benchmark_repetitions={repetitions}", "--benchmark_enable_random_interleaving=true"]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env, stdout=sys.stderr)
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    runs = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate":
            continue
        name = re.sub(r"/(min_time:[^/]*|real_time|repeats:\d+)", "", b["run_name"])
        runs.setdefault(name, []).append(b)
    # median over repetitions
    result = {n: {k: statistics.median(r[k] for r in rs) for k in ("GFLOP/s", "GB/s")} for n, rs in runs.items()}
    return result, data.get("context", {})


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default="build")
    p.add_argument("--quick", action="store_true", help="only m >= 128 GEMM and GEMV weights larger than L2")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    p.add_argument("--min-time", default="", help="seconds per benchmark (default: the programs' own)")
    p.add_argument("--repetitions", type=int, default=1, help="repetitions; the median is reported")
    p.add_argument("--openblas-coretype", default="SkylakeX")
    args = p.parse_args()

    bench_dir = os.path.join(args.build_dir, "benchmarks", "kernels")
    env = dict(os.environ)
    env["OPENBLAS_CORETYPE"] = args.openblas_coretype
    if os.path.isdir(OPENMP_BLAS_DIR):
        env["LD_LIBRARY_PATH"] = OPENMP_BLAS_DIR + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env.setdefault("OMP_PROC_BIND", "false")
    threads = "|".join(args.threads.split(","))

    limits, ctx = run_bench(os.path.join(bench_dir, "bench_limits"), f"/t({threads})(/|$)", "", 1, env)
    ms = "(128|512)" if args.quick else "[0-9]+"
    gemm, gctx = run_bench(os.path.join(bench_dir, "bench_gemm"), f"/{ms}x[0-9]+x[0-9]+/t({threads})(/|$)",
                           args.min_time, args.repetitions, env)
    shapes_v = "(4096x4096|16384x4096)" if args.quick else "[0-9]+x[0-9]+"
    gemv, _ = run_bench(os.path.join(bench_dir, "bench_gemv"), f"/{shapes_v}/t({threads})(/|$)", args.min_time,
                        args.repetitions, env)

    arch = gctx.get("tessera_arch", "?")
    print(f"# tessera GEMM/GEMV vs limits (arch {arch}; OpenBLAS core {gctx.get('openblas_core', 'absent')}, "
          f"{gctx.get('openblas_config', '')})\n")
    print(f"host: {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at {ctx.get('mhz_per_cpu', '?')} MHz\n")
    print("| limit | threads | measured |\n|---|---|---|")
    peak, bw = {}, {}
    for name, v in sorted(limits.items()):
        t = name.rsplit("/t", 1)[1]
        if name.startswith("BM_peak_fma"):
            peak[t] = v["GFLOP/s"]
            print(f"| peak FMA | {t} | {v['GFLOP/s']:.0f} GFLOP/s |")
        else:
            bw[t] = v["GB/s"]
            print(f"| memory read bandwidth | {t} | {v['GB/s']:.1f} GB/s |")

    print("\n## GEMM, c = a · wᵀ (GFLOP/s; f32 weights unless named)\n")
    print("| m x n x k | thr | tessera | OpenBLAS | Eigen | tessera / OpenBLAS | tessera / Eigen | tessera / peak "
          "| tessera bf16 w | tessera f16 w |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    key = re.compile(r"BM_gemm/[^/]+/(\d+)x(\d+)x(\d+)/t(\d+)$")
    rows = []
    for name in gemm:
        m = key.match(name)
        if m:
            rows.append((int(m[4]), int(m[1]), int(m[2]), int(m[3]), name))
    for t, mm, n, k, name in sorted(rows):
        tail = name[len("BM_gemm/"):]
        ours = gemm[name]["GFLOP/s"]
        ob = gemm.get("BM_sgemm_openblas/" + tail, {}).get("GFLOP/s")
        eg = gemm.get("BM_gemm_eigen/" + tail, {}).get("GFLOP/s")
        b16 = gemm.get("BM_gemm_bf16/" + tail, {}).get("GFLOP/s")
        h16 = gemm.get("BM_gemm_f16/" + tail, {}).get("GFLOP/s")
        f = lambda x: f"{x:.1f}" if x else "-"
        r = lambda x, y: f"{x / y:.2f}" if x and y else "-"
        print(f"| {mm}x{n}x{k} | {t} | {ours:.1f} | {f(ob)} | {f(eg)} | {r(ours, ob)} | {r(ours, eg)} | "
              f"{r(ours, peak.get(str(t)))} | {f(b16)} | {f(h16)} |")

    print("\n## GEMV, y = w · x (GB/s of weights read)\n")
    print("'read' sums the same weight bytes right after (BM_gemv_read); 'of limit' divides by bench_limits' bandwidth.\n")
    print("| dtype | n x k | weight MB | thr | tessera GB/s | read GB/s | tessera / read | of limit | OpenBLAS sgemv GB/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    keyv = re.compile(r"BM_gemv/[^/]+/(\w+)/(\d+)x(\d+)/t(\d+)$")
    rows = []
    for name in gemv:
        m = keyv.match(name)
        if m:
            rows.append((m[1], int(m[4]), int(m[2]) * int(m[3]), int(m[2]), int(m[3]), name))
    size = {"f32": 4, "f16": 2, "bf16": 2}
    for dt, t, _, n, k, name in sorted(rows):
        gbs = gemv[name]["GB/s"]
        ob = gemv.get(name.replace("BM_gemv/", "BM_sgemv_openblas/"), {}).get("GB/s")
        mb = n * k * size.get(dt, 4) / 2**20
        rd = gemv.get(name.replace("BM_gemv/", "BM_gemv_read/"), {}).get("GB/s")
        frac = f"{100 * gbs / bw[str(t)]:.0f}%" if str(t) in bw else "-"
        rfrac = f"{100 * gbs / rd:.0f}%" if rd else "-"
        print(f"| {dt} | {n}x{k} | {mb:.1f} | {t} | {gbs:.1f} | {f'{rd:.1f}' if rd else '-'} | {rfrac} | {frac} | "
              f"{f'{ob:.1f}' if ob else '-'} |")


if __name__ == "__main__":
    main()
