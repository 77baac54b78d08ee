"""madf-bench: latency and throughput of one or more backends, measured the same way, side by side.

    madf-bench --engine places2.plan --batch 8 --size 512 --cuda-graph --json bench.json
    madf-bench --ckpt places2.pth --model places2.onnx --engine places2.plan --size 256      # one row each
    madf-bench --ckpt small.safetensors --model small.onnx --runs 20                           # CPU backends

Warm-up (at least --warmup-s seconds and --warmup-runs calls), then --runs timed calls on a real photo with a
procedural mask. Latency = host wall time per call including host<->device copies (trtexec's "Latency"); GPU
compute = CUDA events around execution alone (trtexec's "GPU Compute Time"), where the backend runs on a GPU.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from madf.cli._common import (
    OVERWRITE,
    PATH,
    FloatRange,
    cli_errors,
    format_table,
    progress,
    setup_logging,
)
from madf.cli.backends import (
    CUDA_GRAPH,
    given_files,
    model_options,
    open_file,
    torch_options,
)
from madf.common import paths


def _row(name: str, r: dict) -> list:
    lat, gpu = r["latency_ms"], r["gpu_compute_ms"]
    mem = r["peak_gpu_memory_mb"]
    return [name, "x".join(map(str, r["shape"])), f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}",
            f"{lat['mean']:.2f}", f"{lat['cv']:.1%}", f"{r['images_per_s']:.2f}", f"{r['megapixels_per_s']:.2f}",
            f"{gpu['p50']:.2f}" if gpu else "-", f"{mem:.0f}" if mem is not None else "-"]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Images per call.")
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=1),
              help="Square input side (a multiple of 2^levels); --height/--width override.")
@click.option("--height", type=click.IntRange(min=1), default=None)
@click.option("--width", type=click.IntRange(min=1), default=None)
@click.option("--warmup-s", default=1.0, show_default=True, type=FloatRange(0, 3600),
              help="Minimum warm-up time (at most an hour).")
@click.option("--warmup-runs", default=5, show_default=True, type=click.IntRange(min=0),
              help="Minimum warm-up calls.")
@click.option("--runs", default=50, show_default=True, type=click.IntRange(min=2), help="Timed calls.")
@CUDA_GRAPH
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch (default: torch's choice).")
@click.option("--json", "json_path", type=PATH, default=None,
              help="Also write every statistic, the environment and the engines' build settings here.")
@OVERWRITE
@torch_options
def main(ckpt, model_path, engine, plugin_libs, device, batch, size, height, width, warmup_s, warmup_runs, runs,
         cuda_graph, threads, json_path: Optional[Path], overwrite: bool, torch_options: dict) -> None:
    """Time each given backend (--ckpt: PyTorch, --model: ONNX Runtime, --engine: TensorRT) on the same input."""
    setup_logging()
    files = given_files(ckpt, model_path, engine)
    if not files:
        raise click.UsageError("give at least one of --ckpt, --model, --engine")
    if cuda_graph and not {"torch", "tensorrt"} & set(files):
        raise click.UsageError("--cuda-graph applies to the torch (on CUDA) and tensorrt backends")
    with cli_errors():
        if json_path:   # before minutes of benchmarking, not after
            paths.check_output_file(json_path, "--json", inputs=list(files.values()), overwrite=overwrite)
        from madf.common.errors import InputError
        from madf.runtime.bench import (
            BenchSettings,
            environment,
            make_inputs,
            run_benchmark,
        )
        from madf.runtime.uint8 import size_multiple
        if threads:
            try:
                import torch
                torch.set_num_threads(threads)
            except ImportError:
                pass
        settings = BenchSettings(batch=batch, height=height or size, width=width or size, warmup_s=warmup_s,
                                 warmup_runs=warmup_runs, runs=runs)
        # every backend opened before any is timed: one that cannot run (no GPU for the engine) fails now, not
        # after the others' minutes
        opened = {name: open_file(name, path, device=device if name != "tensorrt" else None, plugin_libs=plugin_libs,
                                  cuda_graph=cuda_graph and name in ("torch", "tensorrt"), torch_options=torch_options)
                  for name, path in files.items()}
        results, rows = {}, []
        for name, backend in opened.items():
            try:
                image, mask = make_inputs(settings, size_multiple(backend))
            except ValueError as exc:
                raise InputError(str(exc)) from None
            with progress(total=runs, desc=f"{name}", leave=False) as bar:
                result = run_benchmark(backend, image, mask, settings, progress=bar)
            result["file"] = str(files[name])
            if hasattr(backend, "sidecar"):
                result["engine_build"] = backend.sidecar
            results[name] = result
            rows.append(_row(name, result))
    click.echo(format_table(["backend", "NxHxW", "p50 ms", "p90 ms", "p99 ms", "mean ms", "CV", "img/s", "MP/s",
                             "GPU p50 ms", "GPU MB"], rows))
    for name, r in results.items():
        click.echo(f"  {name}: {r['backend']}; {r['runs']} runs after {r['warmup']['runs']} warm-up "
                   f"({r['warmup']['seconds']:.1f} s); latency min {r['latency_ms']['min']:.2f} / "
                   f"p95 {r['latency_ms']['p95']:.2f} / max {r['latency_ms']['max']:.2f} ms")
    click.echo("latency: host wall time per call, host<->device copies included; GPU: CUDA events around "
               "execution only")
    if json_path:
        from madf.common.atomic import atomic_path
        with cli_errors(), atomic_path(json_path) as tmp:   # a full disk: one line naming the file
            tmp.write_text(json.dumps({"settings": vars(settings), "environment": environment(),
                                       "results": results}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
