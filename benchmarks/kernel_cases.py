"""The fused kernel's variants on official level shapes, for the profilers of benchmarks/gpu_session.sh.

    python benchmarks/kernel_cases.py calls --levels 1,5,7 --batches 1,32     # each variant once per case (ncu)
    python benchmarks/kernel_cases.py harness-inputs DIR --level 5 --batch 2   # inputs for madf_plugin_harness

`calls` checks every call against the float64 reference before it counts (a wrong variant exits non-zero) and prints
one line per call; on a machine without a GPU, --device cpu runs the same calls on the CPU emulation (tiny sizes).
`harness-inputs` writes DIR/{x,m,weight,bias}.bin (float32, NCHW) for one level and prints the harness's arguments
after the library: `life int64 k=.. s=2 p=.. cout=.. enqueue DIR fp16 N,CIN,H,W,CM cuda`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from madf.model import dynamic_filter as df  # noqa: E402
from madf.model import fused_kernel as kernel  # noqa: E402
from madf.model.config import OFFICIAL  # noqa: E402

SHAPES = {s["level"]: s for s in OFFICIAL.level_shapes()}


def level_case(level: int, batch: int, size: int, seed: int = 0):
    """(x, m, weight, bias) in float32 on the CPU for an official level at a `size` x `size` model input."""
    s = SHAPES[level]
    side = max(size // 2 ** (level - 1), 1)
    k, p = s["kernel"], s["padding"]
    out = (side + 2 * p - k) // 2 + 1
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, s["cin"], side, side, generator=g)
    m = torch.relu(torch.randn(batch, s["mask_channels"], out, out, generator=g))
    w = torch.randn(s["cin"] * k * k * s["cout"], s["mask_channels"], 1, 1, generator=g) * 0.05
    b = torch.randn(w.shape[0], generator=g) * 0.05
    return x, m, w, b


@click.group()
def main():
    pass


@main.command()
@click.option("--levels", default="1,5,7", show_default=True, help="comma-separated official levels")
@click.option("--batches", default="1,32", show_default=True, help="comma-separated batch sizes")
@click.option("--size", type=int, default=256, show_default=True, help="model input side")
@click.option("--device", default="cuda", show_default=True, help="cuda, or cpu for the emulated kernels")
@click.option("--algos", default=",".join(kernel.VARIANTS), show_default=True, help="comma-separated variants")
def calls(levels, batches, size, device, algos):
    """Each variant once per (level, batch), NCHW and (Cin % 32 == 0) NHWC features, checked against float64."""
    module = kernel.load_extension() if device == "cuda" else kernel.load_emulated_extension()
    fused = kernel.FusedKernel(module, "cuda" if device == "cuda" else "cpu")
    wrong = 0
    for level in map(int, levels.split(",")):
        for batch in map(int, batches.split(",")):
            case = level_case(level, batch, size)
            s = SHAPES[level]
            k, p = s["kernel"], s["padding"]
            inputs = [t.half().to(device) for t in case]
            ref = df.dynamic_filter_rewrite(*(t.double() for t in inputs), k, 2, p)
            for algo in algos.split(","):
                for nhwc in (False, True) if s["cin"] % 32 == 0 and algo != "tensor_core" else (False,):
                    x = inputs[0].contiguous(memory_format=torch.channels_last) if nhwc else inputs[0]
                    out = fused(x, *inputs[1:], k, 2, p, algo=algo)
                    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
                    ran = fused.selected(x, *inputs[1:], k, 2, p, algo=algo)
                    ok = err < 2e-3
                    wrong += not ok
                    print(f"level {level} batch {batch} {algo}{'+nhwc' if nhwc else ''} -> {ran}: "
                          f"max rel err {err:.1e} {'ok' if ok else 'WRONG'}", flush=True)
    if device == "cuda":
        torch.cuda.synchronize()
    sys.exit(1 if wrong else 0)


@main.command("harness-inputs")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--level", type=int, required=True)
@click.option("--batch", type=int, default=2, show_default=True)
@click.option("--size", type=int, default=64, show_default=True, help="model input side")
def harness_inputs(folder, level, batch, size):
    """Inputs of one level for madf_plugin_harness's enqueue (every tactic runs on them)."""
    folder.mkdir(parents=True, exist_ok=True)
    x, m, w, b = level_case(level, batch, size)
    for name, t in zip(("x", "m", "weight", "bias"), (x, m, w, b)):
        t.half().float().numpy().tofile(folder / f"{name}.bin")
    s = SHAPES[level]
    print(f"life int64 k={s['kernel']} s=2 p={s['padding']} cout={s['cout']} enqueue {folder} fp16 "
          f"{batch},{s['cin']},{x.shape[2]},{x.shape[3]},{s['mask_channels']} cuda")


if __name__ == "__main__":
    main()
