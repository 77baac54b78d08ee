"""madf-export: a checkpoint to an ONNX file with the image-level contract (image, mask 1 = hole -> inpainted).

    madf-export --ckpt places2.pth --output places2.onnx                      # native lowering, FP32, dynamic N/H/W
    madf-export --ckpt places2.pth --output places2-fp16.onnx --fp16 --check  # FP16 graph, parity vs PyTorch
    madf-export --ckpt places2.pth --output places2-plugin.onnx --dynconv plugin   # for the TensorRT plugin
    madf-export --ckpt places2.pth --fp16 --engine places2-fp16.plan               # export, then madf-build
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from madf.cli._common import OVERWRITE, PATH, cli_errors, format_table, setup_logging
from madf.cli.build import build_and_describe, check_engine_outputs, engine_options
from madf.cli.parity import parity_report
from madf.common import paths


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ckpt", required=True, type=PATH,
              help="Official Pytorch-MADF .pth, a state dict, or a madf-trt .safetensors.")
@click.option("--output", type=PATH, default=None,
              help="ONNX file to write (default: beside the checkpoint, named for the options).")
@click.option("--dynconv", type=click.Choice(["native", "plugin"]), default="native", show_default=True,
              help="native: standard ops (Conv+Mul+ReduceSum); plugin: one madf::MADFDynamicFilter node per level.")
@click.option("--fp16", is_flag=True, help="FP16 network inside FP32 I/O, normalization and compositing.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fix N (default: dynamic).")
@click.option("--height", type=click.IntRange(min=1), default=None, help="Fix H, a multiple of 2^levels.")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Fix W, a multiple of 2^levels.")
@click.option("--raw-outputs", is_flag=True, help="Export the K+1 network outputs (normalized space) instead.")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=17))
@click.option("--simplify", is_flag=True, help="Run onnxslim over the graph (pip install onnxslim).")
@click.option("--check", is_flag=True, help="Compare with PyTorch on real photos through ONNX Runtime; exit 1 "
                                            "past the tolerance (native lowering only).")
@click.option("--check-size", default=None, type=click.IntRange(min=1),
              help="Photo size for --check (default 2 x 2^levels, >= 256).")
@click.option("--engine", type=PATH, default=None,
              help="Also build a TensorRT engine here (as madf-build does, with the options below).")
@engine_options
@OVERWRITE
def main(ckpt: Path, output: Optional[Path], dynconv: str, fp16: bool, batch, height, width, raw_outputs: bool,
         opset: int, simplify: bool, check: bool, check_size, engine: Optional[Path], backend: str, overwrite: bool,
         **build_settings) -> None:
    """Export CKPT to ONNX (checked with onnx.checker and full shape inference; written atomically)."""
    setup_logging()
    if check and (dynconv == "plugin" or raw_outputs):
        raise click.UsageError("--check runs ONNX Runtime, which has no MADFDynamicFilter op and composites only "
                               "the contract output: use it with --dynconv native and without --raw-outputs")
    with cli_errors():
        if output is None:
            suffix = ("-plugin" if dynconv == "plugin" else "") + ("-fp16" if fp16 else "") + ("-raw" if raw_outputs else "")
            output = ckpt.with_name(ckpt.stem + suffix + ".onnx")
        # every output checked before the checkpoint is even read: a read-only folder fails at once
        paths.check_output_file(output, "--output", inputs=[ckpt], overwrite=overwrite)
        if engine is None and build_settings.get("triton_repo"):
            engine = output.with_suffix(".plan")   # the repository needs an engine: build one beside the ONNX
        if engine is not None:
            check_engine_outputs(engine, [ckpt, output], overwrite, build_settings, option="--engine")
        from madf.export.onnx import ExportOptions, export_onnx
        from madf.model.checkpoint import load_checkpoint
        net = load_checkpoint(ckpt)
        options = ExportOptions(lowering=dynconv, fp16=fp16, batch=batch, height=height, width=width,
                                raw_outputs=raw_outputs, opset=opset, simplify=simplify)
        export_onnx(net, output, options)
        if fp16:
            _fp16_headroom(net, height or width or None)
        if check:
            ok = parity_report({"torch": ckpt, "onnxruntime": output}, size=check_size or (height if height == width else None), device="cpu")
            if not ok:
                raise click.ClickException(f"{output} does not match PyTorch within tolerance (see table)")
        if engine is not None:
            build_and_describe(output, engine, fp16, backend, **build_settings)


def _fp16_headroom(net, size) -> None:
    import torch

    from madf.export.fp16 import FP16_MAX, activation_peaks
    from madf.runtime.parity import photo_feeds
    feed = photo_feeds(size or max(256, 2 * net.config.multiple), count=1)[0]
    peaks = activation_peaks(net, torch.from_numpy(feed["image"]), torch.from_numpy(feed["mask"]))
    top = peaks[:3]
    click.echo("FP16 headroom (largest FP32 activations on a real photo; FP16 max 65504):")
    click.echo(format_table(["layer", "max |activation|", "of FP16 max"],
                            [[n, f"{v:.4g}", f"{v / FP16_MAX:.2%}"] for n, v in top]))
    if top and top[0][1] >= FP16_MAX:
        raise click.ClickException(f"{top[0][0]} reaches {top[0][1]:.4g} > 65504: it overflows in FP16; export FP32")


if __name__ == "__main__":
    main()
