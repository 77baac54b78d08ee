"""One GPU, one process: the whole model and the dynamic filter alone, every implementation, timed the same way.

    python benchmarks/gpu.py --out benchmarks/RESULTS.md              # the full run (H100 / H200: about 5 minutes)
    python benchmarks/gpu.py --device cpu --levels 3 --width 0.125 --sizes 32 --batches 1 2 --out /tmp/r.md  # smoke
    python benchmarks/gpu.py --device cpu --emulated --levels 3 --sizes 32 --batches 1 --skip model accuracy  # 1b

Sections (each printed as it finishes, all written to --out as Markdown with the environment and the command):
1. Dynamic filter alone, per official level (256x256 input), batch 32 and 1: official-style unfold FP32, the
   rewrite in FP16 (cuDNN convolution + contraction, NCHW and channels_last: the faster counts), and the fused
   kernel (FP16 tensor cores); GPU ms per call (CUDA graphs of repeated calls), TFLOP/s, speed-up over the rewrite,
   and the kernel's error against a float64 reference (a wrong kernel is reported as wrong, never timed as a win).
1b. Every variant of the fused kernel (the tactics the TensorRT plugin offers) per level, correctness-gated, and
1c. the lowering table for this architecture (madf/model/fused_wins.json's rows, best variant per level).
2. Whole model at each --sizes x --batches: official-style unfold FP32 and the rewrite FP32 (PyTorch's defaults:
   TF32 convolutions), the rewrite FP16, the fused kernel FP16, and the best configuration found (FP16,
   channels_last, torch.compile, CUDA graphs at batch 1, with either filter): images/s, p50 / p99 latency, peak
   extra memory, TFLOP/s and fraction of the dense FP16 tensor-core peak. FLOPs are the model's useful work (the
   rewrite's convolutions, counted by torch's FlopCounterMode), the same for every row.
3. Accuracy against pure FP32 (TF32 off) on a real photo with a free-form hole: PSNR and max abs error of the
   composited [0, 1] output.

Timing: CUDA events around each call after a warm-up, median (p50) and p99 over the calls; peak extra memory is
torch's peak allocation during the calls above what was allocated before them.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from madf.model import acceleration  # noqa: E402
from madf.model import dynamic_filter as df
from madf.model.config import OFFICIAL, ModelConfig  # noqa: E402
from madf.model.network import build_model  # noqa: E402
from madf.model.pipeline import InpaintModel  # noqa: E402

# Dense FP16 tensor-core peaks (FP32 accumulation) from NVIDIA's datasheets, TFLOP/s; --peak-tflops for others.
PEAKS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0,
         "L4": 121.0, "RTX 4090": 165.2}


# ---- timing ---------------------------------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device, min_runs: int = 10, max_runs: int = 200, budget_s: float = 1.5, warmup: int = 3):
    """Per-call milliseconds of ``fn()`` (CUDA events on a GPU, wall clock on the CPU) and the peak extra MB."""
    for _ in range(warmup):
        fn()
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    ms, start = [], time.perf_counter()
    while len(ms) < min_runs or (len(ms) < max_runs and time.perf_counter() - start < budget_s):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            ms.append((a, b))
        else:
            t0 = time.perf_counter()
            fn()
            ms.append((time.perf_counter() - t0) * 1e3)
    sync(device)
    if device.type == "cuda":
        ms = [a.elapsed_time(b) for a, b in ms]
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    else:
        peak = float("nan")
    return np.asarray(ms), peak


def stats(ms):
    """(p50, p99) milliseconds, as madf-bench computes them."""
    from madf.runtime.bench import latency_stats
    s = latency_stats(ms)
    return s["p50"], s["p99"]


# ---- output ---------------------------------------------------------------------------------------------------------
class Report:
    """Prints each table as it is made and keeps the Markdown for --out."""

    def __init__(self, out=None):
        self.parts, self.out = [], out

    def text(self, s: str = ""):
        print(s, flush=True)
        self.parts.append(s)

    def save(self):
        """Write what is there so far (atomically): a run cut short still leaves its finished tables."""
        if self.out:
            from madf.common.atomic import atomic_path
            with atomic_path(self.out) as tmp:
                tmp.write_text(self.markdown())

    def table(self, header, rows):
        rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
        lines = ["| " + " | ".join(header) + " |", rule]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        self.text("\n".join(lines))
        self.text()
        self.save()

    def markdown(self) -> str:
        return "\n".join(self.parts) + "\n"


def fmt(v, digits=2):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:,.{digits}f}"


def environment(device) -> str:
    lines = [f"- date (UTC): {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}",
             f"- command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
             f"- torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
             f"Python {platform.python_version()}"]
    try:
        import triton
        lines[-1] += f", Triton {triton.__version__}"
    except ImportError:
        pass
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        driver = "?"
        with contextlib.suppress(Exception):
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=20).stdout.strip()
        lines.insert(0, f"- GPU: {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2 ** 30:.0f} GiB, "
                        f"compute capability {p.major}.{p.minor}, driver {driver}")
    else:
        lines.insert(0, f"- device: CPU ({os.cpu_count()} cores), a smoke run: no GPU numbers")
    return "\n".join(lines)


def peak_tflops(device, given):
    if given:
        return given, "given"
    if device.type != "cuda":
        return None, "no GPU"
    name = torch.cuda.get_device_name(device)
    for key, value in PEAKS.items():   # longest names first in the dict where they share a prefix
        if key in name:
            return value, f"{name} datasheet"
    return None, f"{name}: unknown, pass --peak-tflops"


def measured_matmul_tflops(device):
    """The FP16 ceiling one library reaches on this GPU: an 8192^3 product on random data."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.float16)
    ms, _ = time_calls(lambda: a @ b, device, min_runs=10, max_runs=30, budget_s=1.0)
    return 2 * 8192 ** 3 / (np.median(ms) * 1e-3) / 1e12


# ---- the fused kernel -----------------------------------------------------------------------------------------------
def fused_build(device, emulated=False):
    """The fused kernel (madf/csrc/plugins/dynamicFilter) on this GPU (on the CPU: its emulation with ``emulated``,
    a smoke run whose times mean nothing), or None on the CPU or when it does not build."""
    from madf.model import fused_kernel as kernel
    if device.type != "cuda":
        return kernel.FusedKernel(kernel.load_emulated_extension(), "cpu") if emulated else None
    try:
        return kernel.cuda_kernel()
    except Exception as exc:  # noqa: BLE001 - a build that fails is reported, the rest still runs
        print(f"the fused kernel did not build: {exc}", flush=True)
        return None


def time_graph(fn, device, calls: int = 20, replays: int = 15):
    """GPU milliseconds per call of ``fn`` with the host out of the way: ``calls`` calls captured in one CUDA graph,
    replayed; p50 over the replays. (A Python call costs tens of microseconds, more than a small level's kernel.)"""
    if device.type != "cuda":
        return stats(time_calls(fn, device, budget_s=0.4)[0])[0]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    ms, _ = time_calls(graph.replay, device, min_runs=replays, max_runs=replays, warmup=2)
    return stats(ms)[0] / calls


# ---- 1. the dynamic filter per level --------------------------------------------------------------------------------
def level_inputs(shape, batch, size, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    side = size // 2 ** (shape["level"] - 1)
    k, p = shape["kernel"], shape["padding"]
    out = (side + 2 * p - k) // 2 + 1
    x = torch.randn(batch, shape["cin"], side, side, generator=g)
    m = torch.relu(torch.randn(batch, shape["mask_channels"], out, out, generator=g))
    w = torch.randn(shape["cin"] * k * k * shape["cout"], shape["mask_channels"], 1, 1, generator=g) * 0.05
    b = torch.randn(w.shape[0], generator=g) * 0.05
    return [t.to(device=device, dtype=dtype) for t in (x, m, w, b)]


def level_section(report, device, batches, size, fused, levels):
    report.text(f"## 1. Dynamic filter alone, per official level ({size}x{size} input)\n")
    report.text("GPU ms per call: 20 calls captured in one CUDA graph, p50 of the replays (the host's launch cost out "
                "of the way); unfold: eager calls. TFLOP/s = 2 x multiply-accumulates / time. rewrite = cuDNN "
                "convolution + contraction in FP16, the faster of NCHW and channels_last. err = the fused kernel's "
                "max abs error / max |reference| against float64.\n")
    for batch in batches:
        rows = []
        for shape in [s for s in OFFICIAL.level_shapes() if s["level"] <= levels]:
            k, p, c1 = shape["kernel"], shape["padding"], shape["mask_channels"] + 1
            x, m, w, b = level_inputs(shape, batch, size, torch.float16, device)
            macs = m.shape[0] * m.shape[2] * m.shape[3] * x.shape[1] * k * k * c1 * shape["cout"]
            tf = lambda ms: 2 * macs / (ms * 1e-3) / 1e12
            row = [shape["level"], f"{shape['cin']}->{shape['cout']}, k{k}", f"{macs / 1e9:.2f}"]
            try:
                xf, mf, wf, bf = (t.float() for t in (x, m, w, b))
                # partial, not a lambda: the tensors are dropped below to free the FP32 copies before the next run
                ms, peak = time_calls(functools.partial(df.dynamic_filter_unfold, xf, mf, wf, bf, k, 2, p), device,
                                      min_runs=3, max_runs=20, budget_s=0.5)
                row += [fmt(stats(ms)[0], 3), fmt(peak, 0)]
                del xf, mf, wf, bf
            except torch.cuda.OutOfMemoryError:
                row += ["OOM", "-"]
            if device.type == "cuda":
                torch.cuda.empty_cache()
            cw = df.rewrite_weight(w, b, x.shape[1], k).contiguous()
            rewrite_ms = []
            for layout in (torch.contiguous_format, torch.channels_last):
                xl, cl = x.contiguous(memory_format=layout), cw.contiguous(memory_format=layout)
                rewrite_ms.append(time_graph(lambda: df.dynamic_filter_rewrite(xl, m, w, b, k, 2, p, conv_weight=cl),
                                             device))
            r_ms = min(rewrite_ms)
            row += [fmt(r_ms, 4), fmt(tf(r_ms), 1)]
            if fused is not None:
                err = fused_error(fused, (x, m, w, b), k, p, "tensor_core")
                if not err < 2e-3:   # a wrong kernel is never timed as a win
                    row += [f"WRONG ({err:.1e})", "-", "-", "-"]
                else:
                    f_ms = time_graph(lambda: fused(x, m, w, b, k, 2, p, algo="tensor_core"), device)
                    row += [fmt(f_ms, 4), fmt(tf(f_ms), 1), f"{r_ms / f_ms:.2f}x", f"{err:.1e}"]
            rows.append(row)
        header = ["level", "shape", "G MAC", "unfold FP32 ms", "unfold peak MB", "rewrite FP16 ms", "rewrite TFLOP/s"]
        if fused is not None:
            header += ["fused FP16 ms", "fused TFLOP/s", "fused speed-up", "fused err"]
        report.text(f"### batch {batch}\n")
        report.table(header, rows)


def fused_error(fused, inputs, k, p, algo, x=None):
    """The fused kernel's max abs error / max |reference| against float64 for one variant (x: other features layout)."""
    ref = df.dynamic_filter_rewrite(*(t.double() for t in inputs), k, 2, p)
    out = fused(inputs[0] if x is None else x, *inputs[1:], k, 2, p, algo=algo)
    return (out.double() - ref).abs().max().item() / ref.abs().max().item()


def variant_section(report, device, batches, size, fused, levels):
    """Section 1b: every variant (tactic) of the fused kernel per level, against the rewrite; returns
    {(level, batch): (best variant, its speed-up)} for the lowering table. A variant is timed only after it matches
    the float64 reference."""
    from madf.model.fused_kernel import VARIANTS
    report.text(f"## 1b. Fused kernel variants per level ({size}x{size} input)\n")
    report.text("GPU ms per call as in section 1 (rewrite: the faster layout). Variants: round 1 (tensor_core), the "
                "cheaper stage (pipelined), split-K in 2 / 4 / 8 (split_kS; fewer when the window has fewer than two "
                "stages per split); `+nhwc`: the same with channels_last features read in place (Cin % 32 == 0). "
                "TensorRT's builder times the same variants as plugin tactics and keeps the fastest per layer.\n")
    wins = {}
    names = list(VARIANTS) + ["pipelined+nhwc", "split_k4+nhwc"]
    for batch in batches:
        rows = []
        for shape in [s for s in OFFICIAL.level_shapes() if s["level"] <= levels]:
            k, p = shape["kernel"], shape["padding"]
            inputs = level_inputs(shape, batch, size, torch.float16, device)
            x, m, w, b = inputs
            cw = df.rewrite_weight(w, b, x.shape[1], k).contiguous()
            r_ms = min(time_graph(lambda: df.dynamic_filter_rewrite(xl, m, w, b, k, 2, p, conv_weight=cl), device)
                       for xl, cl in ((x.contiguous(memory_format=f), cw.contiguous(memory_format=f))
                                      for f in (torch.contiguous_format, torch.channels_last)))
            row, best = [shape["level"], f"{shape['cin']}->{shape['cout']}, k{k}", fmt(r_ms, 4)], None
            for name in names:
                algo, nhwc = name.split("+")[0], name.endswith("+nhwc")
                if nhwc and shape["cin"] % 32:
                    row.append("-")
                    continue
                xv = x.contiguous(memory_format=torch.channels_last) if nhwc else x
                err = fused_error(fused, inputs, k, p, algo, xv)
                if not err < 2e-3:   # correctness first: a wrong variant is never timed
                    row.append(f"WRONG ({err:.1e})")
                    continue
                ran = fused.selected(xv, m, w, b, k, 2, p, algo=algo)
                ms = time_graph(lambda: fused(xv, m, w, b, k, 2, p, algo=algo), device)
                row.append(f"{fmt(ms, 4)} ({ran})" if ran != algo else fmt(ms, 4))
                if best is None or ms < best[1]:
                    best = (name, ms)
            row += [best[0] if best else "-", f"{r_ms / best[1]:.2f}x" if best else "-"]
            wins[(shape["level"], batch)] = (best[0], r_ms / best[1]) if best else None
            rows.append(row)
        report.text(f"### batch {batch}\n")
        report.table(["level", "shape", "rewrite FP16 ms"] + [f"{n} ms" for n in names] + ["best", "best speed-up"],
                     rows)
    return wins


class BestVariants:
    """The fused kernel running, per call, the variant section 1b found fastest for that level (its input side and
    batch; a shape not measured: the variant measured for its Cin and kernel at the largest side, else round 1)."""

    def __init__(self, fused, wins, size):
        self.fused, self.choices, self.fallback = fused, {}, {}
        for level_batch, won in sorted(wins.items()):
            if won is None:
                continue
            level, batch = level_batch
            s = next(s for s in OFFICIAL.level_shapes() if s["level"] == level)
            self.choices[(s["cin"], s["kernel"], size // 2 ** (level - 1), batch)] = won[0]
            self.fallback.setdefault((s["cin"], s["kernel"]), won[0])

    def __call__(self, x, m, weight, bias, kernel_size, stride, padding):
        key = (x.shape[1], kernel_size)
        name = self.choices.get(key + (x.shape[2], x.shape[0]), self.fallback.get(key, "tensor_core"))
        if name.endswith("+nhwc"):
            x = x.contiguous(memory_format=torch.channels_last)
        return self.fused(x, m, weight, bias, kernel_size, stride, padding, algo=name.split("+")[0])


def lowering_section(report, device, wins, batches, levels):
    """The per-architecture lowering table: where the best variant beats the rewrite, as fused_wins.json holds it
    (madf.model.fused_table reads that file for `auto` and madf-export --dynconv auto); printed here as JSON rows to
    paste into it, and as a table."""
    import json

    from madf.model import fused_table
    arch = fused_table.arch_of(torch.cuda.get_device_capability(device)) if device.type == "cuda" else "emulated"
    report.text(f"## 1c. Lowering table for {arch} (madf/model/fused_wins.json)\n")
    decide = fused_table.table()["decide_at_batch"]
    shapes = {s["level"]: s for s in OFFICIAL.level_shapes() if s["level"] <= levels}
    json_rows, rows = [], []
    for level, s in shapes.items():
        entry = {"level": level, "cin": s["cin"], "cout": s["cout"], "kernel": s["kernel"]}
        for batch in batches:
            won = wins.get((level, batch))
            if won:
                entry[f"speedup_batch{batch}"] = round(won[1], 2)
                entry[f"variant_batch{batch}"] = won[0]
        json_rows.append(entry)
        at = entry.get(f"speedup_batch{decide}")
        rows.append([level, f"{s['cin']}->{s['cout']}, k{s['kernel']}",
                     *(f"{entry.get(f'speedup_batch{b}', '-')}x ({entry.get(f'variant_batch{b}', '-')})"
                       for b in batches),
                     "-" if at is None else ("plugin (fused)" if at > 1.0 else "standard ops")])
    report.table(["level", "shape"] + [f"best at batch {b}" for b in batches] + [f"lowering (batch {decide})"], rows)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU emulation"
    report.text("```json\n" + json.dumps({arch: {"gpu": gpu,
                                                  "date": datetime.date.today().isoformat(),
                                                  "source": "benchmarks/RESULTS.md", "shapes": json_rows}},
                                            indent=1) + "\n```\n")


# ---- 2. the whole model ---------------------------------------------------------------------------------------------
def model_flops(config, size, device):
    """FLOPs of one image through the rewrite (convolutions and matrix products, as FlopCounterMode counts them)."""
    from torch.utils.flop_counter import FlopCounterMode
    net = build_model(config, seed=0).to(device)
    model = InpaintModel(net).to(device).eval()
    image = torch.rand(1, 3, size, size, device=device)
    mask = (torch.rand(1, 1, size, size, device=device) > 0.7).float()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(image, mask)
    return counter.get_total_flops()


def make_runner(config, device, impl, options, pytorch_defaults=False):
    """A callable (image, mask) -> output on the project's own inference path (madf.model.acceleration.prepare)."""
    net = build_model(config, seed=0)
    model = InpaintModel(net)
    run, module = acceleration.prepare(model, device, options)
    module.net.dynamic_filter = impl
    def call(image, mask):
        ctx = contextlib.nullcontext() if pytorch_defaults else acceleration.precision_context(options, device)
        with torch.no_grad(), ctx:
            return run(image, mask)
    return call


def whole_model_inputs(size, batch, device, multiple):
    from madf.runtime.bench import BenchSettings, make_inputs
    image, mask = make_inputs(BenchSettings(batch=batch, height=size, width=size), multiple)
    return torch.from_numpy(image).to(device), torch.from_numpy(mask).to(device)


def whole_model_section(report, device, config, sizes, batches, fused_ok, peak, compile_best, best_variants=False):
    report.text("## 2. Whole model\n")
    fp32 = acceleration.TorchOptions("fp32", False)
    configs = [("official-style unfold, FP32 (PyTorch defaults)", "unfold", fp32, True),
               ("rewrite, FP32 (PyTorch defaults: TF32 convolutions)", "rewrite", fp32, True),
               ("rewrite, FP16", "rewrite", acceleration.TorchOptions("fp16", False), False)]
    if fused_ok:
        configs += [("fused kernel at every level, FP16", "fused", acceleration.TorchOptions("fp16", False), False),
                    (f"auto (fused where the window <= {df.FUSED_MAX_WINDOW}), FP16", "auto",
                     acceleration.TorchOptions("fp16", False), False)]
    if best_variants:
        configs.append(("fused, the best variant per level (section 1b), FP16", "fused_best",
                        acceleration.TorchOptions("fp16", False), False))
    best_candidates = ((["rewrite"] + (["auto"] if fused_ok else []) + (["fused_best"] if best_variants else []))
                       if device.type == "cuda" else [])
    results, best_impl = {}, {}
    for size in sizes:
        best_ms, best_impl_here = {}, {}
        flops = model_flops(config, size, device)
        report.text(f"### {size}x{size}: {flops / 1e9:.1f} GFLOP per image\n")
        rows = []
        for batch in batches:
            image, mask = whole_model_inputs(size, batch, device, config.multiple)
            entries = list(configs)
            # the first size tries every candidate; later sizes only the winner there (each compile costs ~20 s)
            winner = best_impl.get(batch)
            for impl in best_candidates if winner is None else [winner]:
                # batch 1 is launch-bound: CUDA graphs (compile's reduce-overhead); batch 32 is compute-bound
                mode = "reduce-overhead" if batch == 1 else "default"
                label = f"best: FP16, channels_last, compile {mode}, {impl}"
                if compile_best:
                    entries.append((label, impl, acceleration.TorchOptions("fp16", True, compile=mode), False))
                else:
                    entries.append((label.replace(f"compile {mode}", "CUDA graph"), impl,
                                    acceleration.TorchOptions("fp16", True, cuda_graph=True), False))
            for label, impl, options, defaults in entries:
                t0 = time.perf_counter()
                try:
                    run = make_runner(config, device, impl, options, defaults)
                    ms, mem = time_calls(lambda: run(image, mask), device, min_runs=5 if batch > 1 else 20,
                                         max_runs=100 if batch > 1 else 300, budget_s=1.5 if batch > 1 else 1.0)
                except torch.cuda.OutOfMemoryError:
                    rows.append([label, batch, "OOM", "-", "-", "-", "-", "-"])
                    continue
                except Exception as exc:  # noqa: BLE001 - one failing configuration must not hide the others
                    traceback.print_exc()
                    rows.append([label, batch, f"failed: {type(exc).__name__}", "-", "-", "-", "-", "-"])
                    continue
                finally:
                    run = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                p50, p99 = stats(ms)
                tflops = flops * batch / (p50 * 1e-3) / 1e12
                results[(size, batch, label)] = p50
                if label.startswith("best") and winner is None and p50 < best_ms.get(batch, float("inf")):
                    best_ms[batch], best_impl_here[batch] = p50, impl
                rows.append([label, batch, fmt(batch / p50 * 1e3, 0), fmt(p50, 2), fmt(p99, 2), fmt(mem, 0),
                             fmt(tflops, 1), f"{tflops / peak:.1%}" if peak else "-"])
                print(f"  ({time.perf_counter() - t0:.0f} s incl. build/compile) {rows[-1]}", flush=True)
        best_impl = best_impl or best_impl_here
        report.table(["configuration", "batch", "images/s", "p50 ms", "p99 ms", "peak extra MB", "TFLOP/s",
                      "of FP16 peak"], rows)
    return results


# ---- 3. accuracy ----------------------------------------------------------------------------------------------------
def psnr(a, b):
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def accuracy_section(report, device, config, sizes, fused_ok):
    report.text("## 3. Accuracy against pure FP32 (TF32 off)\n")
    report.text("Composited output in [0, 1], a real photo with a free-form hole, batch 2.\n")
    rows = []
    for size in sizes:
        image, mask = whole_model_inputs(size, 2, device, config.multiple)
        ref = make_runner(config, device, "rewrite", acceleration.TorchOptions("fp32", False))(image, mask)
        entries = [("official-style unfold, FP32", "unfold", acceleration.TorchOptions("fp32", False)),
                   ("rewrite, TF32" if device.type == "cuda" else "rewrite, BF16", "rewrite",
                    acceleration.TorchOptions("tf32" if device.type == "cuda" else "bf16", False)),
                   ("rewrite, FP16", "rewrite", acceleration.TorchOptions("fp16", False)),
                   ("rewrite, FP16, channels_last", "rewrite", acceleration.TorchOptions("fp16", True))]
        if fused_ok:
            entries += [("fused kernel at every level, FP16", "fused", acceleration.TorchOptions("fp16", False)),
                        ("auto, FP16, channels_last", "auto", acceleration.TorchOptions("fp16", True))]
        for label, impl, options in entries:
            out = make_runner(config, device, impl, options)(image, mask)
            rows.append([label, f"{size}x{size}", fmt(psnr(out, ref), 1), f"{(out - ref).abs().max().item():.2e}"])
    report.table(["configuration", "size", "PSNR dB", "max abs"], rows)


# ---- main -----------------------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--levels", type=int, default=7, help="model levels (7: the official network)")
    ap.add_argument("--width", type=float, default=1.0, help="channel width (1: the official network)")
    ap.add_argument("--no-compile", action="store_true", help="best configuration without torch.compile")
    ap.add_argument("--emulated", action="store_true",
                    help="--device cpu: run the fused-kernel sections on its CPU emulation (a smoke run)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["levels", "variants", "model", "accuracy"])
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense FP16 tensor-core peak of this GPU")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here (atomically)")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA GPU visible to torch: run on a GPU machine, or --device cpu for a smoke run")
    config = ModelConfig(levels=args.levels, width=args.width)
    report = Report(args.out)
    report.text(f"# GPU benchmark results\n\n{environment(device)}")
    peak, source = peak_tflops(device, args.peak_tflops)
    line = f"- dense FP16 tensor-core peak: {fmt(peak, 1)} TFLOP/s ({source})"
    if device.type == "cuda":
        line += f"; an 8192^3 FP16 matmul here: {measured_matmul_tflops(device):.0f} TFLOP/s"
    report.text(line + "\n")

    fused = fused_build(device, args.emulated)
    if "levels" not in args.skip:
        level_section(report, device, args.batches, 256 if device.type == "cuda" else min(args.sizes), fused,
                      args.levels)
    wins = {}
    if fused is not None and "variants" not in args.skip:
        variant_size = 256 if device.type == "cuda" else min(args.sizes)
        wins = variant_section(report, device, args.batches, variant_size, fused, args.levels)
        lowering_section(report, device, wins, args.batches, args.levels)
    if fused is not None:
        from madf.model import fused_kernel as kernel
        df.register("fused")(kernel.compilable(fused))   # a custom op: torch.compile keeps it in its graph
        if wins:
            df.register("fused_best")(kernel.compilable(BestVariants(fused, wins, variant_size),
                                                        "madf::dynamic_filter_fused_best"))
    if "model" not in args.skip:
        whole_model_section(report, device, config, args.sizes, args.batches, fused is not None, peak,
                            not args.no_compile, best_variants=bool(wins))
    if "accuracy" not in args.skip:
        accuracy_section(report, device, config, args.sizes, fused is not None)
    if args.out:
        report.save()
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
