"""madf-export: a checkpoint to an ONNX file with the image-level contract (image, mask 1 = hole -> inpainted).

    madf-export --ckpt places2.pth --output places2.onnx                      # native lowering, FP32, dynamic N/H/W
    madf-export --ckpt places2.pth --output places2-fp16.onnx --fp16          # FP16 graph, verified against FP32
    madf-export --ckpt places2.pth --output places2-plugin.onnx --dynconv plugin   # for the TensorRT plugin
    madf-export --ckpt places2.pth --fp16 --engine places2-fp16.plan               # export, then madf-build
    madf-export --ckpt places2.pth --io uint8 --output places2-u8.onnx   # raw photos in, the composite out
    madf-export --ckpt places2.pth --int8 --calib photos/        # Q/DQ INT8, calibrated, gated against FP32
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import click

from madf.cli._common import OVERWRITE, PATH, cli_errors, format_table, setup_logging
from madf.cli.build import (
    build_and_describe,
    check_engine_outputs,
    check_profile,
    engine_options,
)
from madf.cli.parity import parity_report
from madf.common import paths


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ckpt", required=True, type=PATH,
              help="Official Pytorch-MADF .pth, a state dict, or a madf-trt .safetensors.")
@click.option("--output", type=PATH, default=None,
              help="ONNX file to write (default: beside the checkpoint, named for the options).")
@click.option("--dynconv", type=click.Choice(["native", "plugin", "auto"]), default="native", show_default=True,
              help="native: standard ops (Conv+Mul+ReduceSum); plugin: one madf::MADFDynamicFilter node per level; "
                   "auto: the plugin only at the levels where the fused kernel beats the standard ops on --target "
                   "(the measured table madf/model/fused_wins.json).")
@click.option("--target", default=None, metavar="sm_XY",
              help="--dynconv auto: the GPU architecture the engine will run on (default: this machine's GPU).")
@click.option("--fp16", is_flag=True, help="FP16 network inside FP32 I/O, normalization and compositing.")
@click.option("--int8", is_flag=True,
              help="INT8 Q/DQ graph (explicit quantization: ONNX Runtime, TensorRT), calibrated on real photos with "
                   "masks from the paper's hole-ratio buckets and checked against FP32 before it is written.")
@click.option("--fp8", is_flag=True,
              help="FP8 (E4M3) Q/DQ graph for TensorRT on Ada, Hopper and newer, calibrated and gated as --int8 is "
                   "(FP8 keeps ~30 dB per tensor: set --quant-gate).")
@click.option("--calib", type=PATH, default=None,
              help="--int8/--fp8: a folder of your own photos to calibrate on and check with (default: the "
                   "bundled ones).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile", "distribution"]), default=None,
              help="--int8 (default minmax) / --fp8 (distribution only): how activation ranges are chosen from the "
                   "calibration photos.")
@click.option("--int8-for", "int8_form", type=click.Choice(["tensorrt", "onnxruntime"]), default="tensorrt",
              show_default=True,
              help="--int8: tensorrt: symmetric INT8 around Conv only, the Q/DQ form TensorRT and ONNX Runtime both "
                   "take; onnxruntime: UINT8 activations between layers too, ONNX Runtime's fast CPU path (TensorRT "
                   "refuses it).")
@click.option("--quant-gate", "--int8-gate", "gate_db", type=float, default=40.0, show_default=True, metavar="DB",
              help="--int8/--fp8: the PSNR (dB) every held-out photo's composite must reach against FP32's; layers are "
                   "kept in float, noisiest first, until it does.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Fix N (default: dynamic).")
@click.option("--height", type=click.IntRange(min=1), default=None,
              help="Fix H (a multiple of 2^levels for --io float; any for uint8).")
@click.option("--width", type=click.IntRange(min=1), default=None,
              help="Fix W (a multiple of 2^levels for --io float; any for uint8).")
@click.option("--io", "io", type=click.Choice(["float", "uint8"]), default="float", show_default=True,
              help="float: the contract (NCHW [0,1], caller pads and composites); uint8: image (N,H,W,3) and mask "
                   "(N,H,W,1) uint8 of any size in, the composite (N,H,W,3) uint8 out; padding, cropping, rounding "
                   "and compositing run inside the graph.")
@click.option("--invert-mask", is_flag=True,
              help="--io uint8: the file takes masks with black (< 128) = hole, white = keep.")
@click.option("--raw-outputs", is_flag=True, help="Export the K+1 network outputs (normalized space) instead.")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=17))
@click.option("--simplify", is_flag=True, help="Run onnxslim over the graph (pip install onnxslim).")
@click.option("--check", is_flag=True, help="Compare with PyTorch on real photos through ONNX Runtime; exit 1 "
                                            "past the tolerance (native lowering only).")
@click.option("--verify/--no-verify", default=True, show_default=True,
              help="--fp16: compare the FP16 model with FP32 on real photos before the file is written; a file "
                   "that does not match is never left behind.")
@click.option("--check-size", default=None, type=click.IntRange(min=1),
              help="Photo size for --check and for --int8's calibration and gate (default 2 x 2^levels, >= 256).")
@click.option("--engine", type=PATH, default=None,
              help="Also build a TensorRT engine here (as madf-build does, with the options below).")
@engine_options
@OVERWRITE
def main(ckpt: Path, output: Optional[Path], dynconv: str, target: Optional[str], fp16: bool, int8: bool, fp8: bool,
         calib: Optional[Path], calib_method: Optional[str], int8_form: str, gate_db: float, batch, height, width,
         io: str, invert_mask: bool, raw_outputs: bool, opset: int, simplify: bool, check: bool, verify: bool,
         check_size, engine: Optional[Path], backend: str, overwrite: bool, **build_settings) -> None:
    """Export CKPT to ONNX (checked with onnx.checker and full shape inference; written atomically)."""
    setup_logging()
    quantized = "fp8" if fp8 else "int8" if int8 else None
    if int8 and fp8:
        raise click.UsageError("--int8 with --fp8: choose one")
    if quantized and (fp16 or raw_outputs):
        clash = "--fp16" if fp16 else "--raw-outputs"
        raise click.UsageError(f"--{quantized} with {clash}: {quantized.upper()} is quantized from the FP32 contract "
                               f"file (ONNX Runtime calibrates it); drop {clash}")
    if check and (dynconv == "plugin" or raw_outputs):
        raise click.UsageError("--check runs ONNX Runtime, which has no MADFDynamicFilter op and composites only "
                               "the contract output: use it with --dynconv native and without --raw-outputs")
    with cli_errors():
        if output is None:
            suffix = {"plugin": "-plugin", "auto": "-mixed"}.get(dynconv, "") + ("-fp16" if fp16 else "") + \
                (f"-{quantized}" if quantized else "") + \
                ("-raw" if raw_outputs else "") + ("-uint8" if io == "uint8" else "")
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
        if dynconv == "auto" and target is None:
            target = _local_arch()
        options = ExportOptions(lowering=dynconv, target=target, fp16=fp16, batch=batch, height=height, width=width,
                                raw_outputs=raw_outputs, opset=opset, simplify=simplify, io=io,
                                invert_mask=invert_mask)
        options.validate(net.config.multiple)
        from madf.export.onnx import plugin_levels
        if check and plugin_levels(net, options):
            raise click.UsageError(f"--dynconv auto puts the plugin at levels {plugin_levels(net, options)} on "
                                   f"{target}, and --check runs ONNX Runtime, which has no MADFDynamicFilter op: "
                                   f"drop --check (madf-parity checks the engine)")
        if engine is not None:   # the engine's profile checked against the file to come, before the export
            check_profile((batch or -1, height or -1, width or -1), build_settings, net.config.multiple, io)
        size = check_size or (height if height == width else None)
        if fp16:
            _fp16_headroom(net, height or width or None)
        # the checks run on the written temp file, which takes the output's name only once they pass
        if fp16 and verify:
            checked = functools.partial(_verify_fp16, ckpt, output=output, options=options, size=size)
        elif check:
            def checked(tmp):
                _require(parity_report({"torch": ckpt, "onnxruntime": tmp}, size=size, device="cpu",
                                       shown_as={"onnxruntime": output}), output)
        else:
            checked = None
        if quantized:
            _export_quantized(net, output, options, calib, calib_method, "fp8" if fp8 else int8_form, gate_db, size)
        else:
            export_onnx(net, output, options, verify=checked)
        if engine is not None:
            build_and_describe(output, engine, fp16, backend, **build_settings)


def _export_quantized(net, output: Path, options, calib, method: Optional[str], form: str, gate_db: float, size
                      ) -> None:
    """FP32 export to a temp file, then quantized into ``output`` once it passes the gate (madf.quantize.int8). A
    plugin or mixed lowering is exported twice: its native twin is calibrated and gated (ONNX Runtime cannot run the
    custom op), the lowered file gets the same Q/DQ."""
    import dataclasses
    import tempfile

    from madf.export.onnx import export_onnx
    from madf.quantize.int8 import FORMS, QuantOptions, quantize_file
    settings = QuantOptions(method=method, form=form, calibration=calib, gate_db=gate_db,
                            size=size or max(256, 2 * net.config.multiple))
    settings.validate()
    with tempfile.TemporaryDirectory(prefix="madf-quant-") as work:
        fp32, lowered = Path(work) / "fp32.onnx", None
        export_onnx(net, fp32, dataclasses.replace(options, lowering="native"))
        if options.lowering != "native":
            lowered = Path(work) / "lowered.onnx"
            export_onnx(net, lowered, options)
        meta = quantize_file(fp32, output, settings, lowered=lowered,
                             on_progress=lambda line: click.echo(f"{FORMS[form].precision.upper()}: {line}"))
    kept = meta["madf.quant_float_layers"]
    click.echo(format_table(["file", "for", "method", "calibration", "PSNR vs FP32 (worst photo)", "in the hole",
                             "layers kept in float"],
                            [[str(output), meta["madf.quant_form"], meta["madf.quant_method"],
                              f"{meta['madf.quant_calibration_photos']} photos",
                              f"{meta['madf.quant_psnr_db']} dB (gate {meta['madf.quant_gate_db']})",
                              f"{meta['madf.quant_hole_psnr_db']} dB", kept.replace(",", ", ") or "none"]]))


def _require(ok: bool, output: Path) -> None:
    if not ok:
        raise click.ClickException(f"{output} does not match PyTorch FP32 within tolerance (see table); nothing "
                                   f"was written")


def _verify_fp16(ckpt: Path, path: Path, *, output: Path, options, size) -> None:
    """The FP16 file against the FP32 checkpoint through ONNX Runtime; ONNX Runtime has no MADFDynamicFilter op
    and composites only the contract output, so a plugin or raw-output file is judged by the FP16 network it holds,
    run in PyTorch."""
    click.echo("verifying the FP16 model against FP32 (--no-verify skips this):")
    if options.lowering == "native" and not options.raw_outputs:
        ok = parity_report({"torch": ckpt, "onnxruntime": path}, size=size, device="cpu",
                           shown_as={"onnxruntime": output})
    else:
        ok = parity_report({"torch": ckpt}, size=size, device="cpu",
                           torch_options={"precision": "fp16", "channels_last": False})
    _require(ok, output)


def _fp16_headroom(net, size) -> None:
    import torch

    from madf.export.fp16 import FP16_MAX, activation_peaks
    from madf.model.precision import overflowing
    from madf.runtime.parity import photo_feeds
    feed = photo_feeds(size or max(256, 2 * net.config.multiple), count=1)[0]
    peaks = activation_peaks(net, torch.from_numpy(feed["image"]), torch.from_numpy(feed["mask"]))
    top = peaks[:3]
    click.echo("FP16 headroom (largest FP32 activations on a real photo; FP16 max 65504):")
    click.echo(format_table(["layer", "max |activation|", "of FP16 max"],
                            [[n, f"{v:.4g}", f"{v / FP16_MAX:.2%}"] for n, v in top]))
    bad = overflowing(peaks, torch.float16)
    if bad:
        raise click.ClickException(f"{bad[0][0]} reaches {bad[0][1]:.4g} > 65504: it overflows in FP16; export FP32")


def _local_arch() -> Optional[str]:
    """This machine's GPU architecture ('sm_90'), or None (then --dynconv auto asks for --target)."""
    import torch
    if not torch.cuda.is_available():
        return None
    from madf.model.fused_table import arch_of
    return arch_of(torch.cuda.get_device_capability())


if __name__ == "__main__":
    main()
