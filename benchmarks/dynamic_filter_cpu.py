"""Time and peak memory of the dynamic filter's implementations on CPU at 256x256 (per level and whole model).

    .venv/bin/python benchmarks/dynamic_filter_cpu.py [--size 256] [--repeats 3] [--json out.json]

Each measurement runs in a fresh process, so its peak memory is its own: "peak MiB" is the growth of the process's
peak resident set during the timed calls over what it held before them (inputs and weights excluded). Times are
the median of --repeats calls after one warm-up. GPU numbers come from benchmarks/ scripts of the GPU issues.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time

IMPLS = ("unfold", "rewrite")


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _measure(task, impl, size, repeats, queue):
    import torch

    from madf.model.config import OFFICIAL
    from madf.model.dynamic_filter import dynamic_filter
    from madf.model.network import build_model

    torch.manual_seed(0)
    if task == "model":
        net = build_model(OFFICIAL, dynamic_filter=impl, seed=0)
        x = torch.rand(1, 3, size, size)
        mask = (torch.rand(1, 1, size, size) > 0.25).float().expand(-1, 3, -1, -1)
        run = lambda: net(x * mask, mask)
    else:
        s = OFFICIAL.level_shapes()[task - 1]
        hin = size // 2 ** (task - 1)
        k, p = s["kernel"], s["padding"]
        x = torch.randn(1, s["cin"], hin, hin)
        m = torch.relu(torch.randn(1, s["mask_channels"], hin // 2, hin // 2))
        w = torch.randn(s["cin"] * k * k * s["cout"], s["mask_channels"], 1, 1) * 0.01
        b = torch.zeros(w.shape[0])
        run = lambda: dynamic_filter(x, m, w, b, k, 2, p, impl=impl)
    with torch.inference_mode():
        run()                                  # warm-up (and the rewrite's one-time weight derivation)
        before = _rss_mib()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    queue.put({"ms": 1000 * statistics.median(times), "peak_mib": max(0.0, _peak_mib() - before)})


def measure(task, impl, size, repeats):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(task, impl, size, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from madf.cli._common import format_table
    from madf.model.config import OFFICIAL

    tasks = list(range(1, OFFICIAL.levels + 1)) + ["model"]
    rows, records = [], []
    for task in tqdm(tasks, desc="measuring", unit="task"):
        res = {impl: measure(task, impl, args.size, args.repeats) for impl in IMPLS}
        if task == "model":
            label, shape = "whole model", f"official, {args.size}x{args.size}"
        else:
            s = OFFICIAL.level_shapes()[task - 1]
            label = f"level {task}"
            shape = f"{s['cin']}->{s['cout']} k{s['kernel']} @ {args.size // 2 ** (task - 1)}px"
        rows.append([label, shape, f"{res['unfold']['ms']:.1f}", f"{res['rewrite']['ms']:.1f}",
                     f"{res['unfold']['ms'] / res['rewrite']['ms']:.1f}x",
                     f"{res['unfold']['peak_mib']:.0f}", f"{res['rewrite']['peak_mib']:.0f}"])
        records.append({"task": str(task), "shape": shape, **{f"{i}_{k}": v for i in IMPLS for k, v in res[i].items()}})
    print(f"\nCPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, batch 1, median of {args.repeats}")
    print(format_table(["", "shape", "unfold ms", "rewrite ms", "speed-up", "unfold peak MiB",
                        "rewrite peak MiB"], rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"size": args.size, "torch": torch.__version__, "rows": records}, fh, indent=2)


if __name__ == "__main__":
    main()
