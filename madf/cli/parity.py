"""madf-parity: compare backends on real photos and procedural masks (the first given is the reference).

    madf-parity --ckpt places2.pth --model places2.onnx              # PyTorch vs ONNX Runtime
    madf-parity --ckpt places2.pth --engine places2.plan --plugin-lib build/plugins/libmadf_plugins.so
    madf-parity --model places2.onnx --engine places2-fp16.plan --json parity.json   # any two (or more)

Reference order: --ckpt, then --model, then --engine. polygraphy runs every backend (one runner each) and judges with
its comparator; the table gives max / mean abs error and PSNR between outputs on [0,1]. The tolerance follows the
least precise model compared (max abs 1e-4 FP32, 5e-2 FP16; --atol overrides). Exit status 1 past it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import click

from madf.cli._common import OVERWRITE, PATH, FloatRange, cli_errors, format_table, setup_logging
from madf.cli.backends import (
    CUDA_GRAPH,
    given_files,
    model_options,
    open_file,
    torch_options,
)
from madf.common import paths


def _accelerated(torch_options: Optional[dict], cuda_graph: bool) -> bool:
    """Whether torch options other than FP32 eager were asked for."""
    o = torch_options or {}
    return bool(cuda_graph or (o.get("precision") or "fp32") != "fp32" or o.get("channels_last")
                or o.get("compile", "off") != "off")


def _default_size(backends, multiple: int) -> int:
    """The first fixed size among the models, else the smallest size >= 256 that every profile admits."""
    for b in backends:
        if b.fixed_size:
            return b.fixed_size[0]
    return min([max(256, 2 * multiple)] + [b.max_side for b in backends if b.max_side])


def parity_report(files: Dict[str, Path], size: Optional[int] = None, photos: int = 3, seed: int = 0,
                  atol: Optional[float] = None, device: Optional[str] = None, json_path: Optional[Path] = None,
                  verbose: bool = False, plugin_libs: Sequence[Path] = (), torch_options: Optional[dict] = None,
                  cuda_graph: bool = False, shown_as: Optional[Dict[str, Path]] = None,
                  restamp: Optional[Path] = None) -> bool:
    """Print the comparison table for {backend: file}; return whether it passed. MADFError on bad input.
    ``shown_as``: {backend: path} to name instead of the file run (a temp file about to take the user's name).
    ``restamp``: an ONNX file a tool rewrote, compared with the reference although its digest no longer matches;
    when it passes, its digests are recorded again (madf.runtime.restamp)."""
    from madf.common.errors import InputError
    from madf.runtime.parity import MIN_FILLED, TOLERANCE, UINT8_STEP, compare, photo_feeds
    if len(files) + bool(restamp) < 2 and not ("torch" in files and _accelerated(torch_options, cuda_graph)):
        raise InputError("parity needs two models to compare: give two of --ckpt, --model, --engine, or --ckpt "
                         "with --precision / --compile / --channels-last / --cuda-graph")
    backends, sources = {}, {}
    for name, path in files.items():
        if name == "torch" and torch_options and _accelerated(torch_options, cuda_graph):
            # the torch options under test, judged against the FP32 eager model of the same checkpoint
            backends["torch fp32"] = open_file(name, path, device=device,
                                               torch_options={"precision": "fp32", "channels_last": False})
            variant = open_file(name, path, device=device, torch_options=torch_options, cuda_graph=cuda_graph)
            backends[f"torch {variant.options.describe()}"] = variant
            sources.update({label: path for label in backends if label.startswith("torch")})
            continue
        # the torch reference is FP32 unless other options were asked for
        backends[name] = open_file(name, path, device=device if name != "tensorrt" else None, plugin_libs=plugin_libs,
                                   torch_options={"precision": "fp32", "channels_last": False})
        sources[name] = (shown_as or {}).get(name, path)
        if sources[name] != path and hasattr(backends[name], "path"):   # its describe() and messages name it
            backends[name].path = Path(sources[name])
    if restamp is not None:
        from madf.runtime.onnxruntime import OnnxRuntimeBackend
        backends["rewritten"] = OnnxRuntimeBackend(restamp, device=device or "cpu", verify_digest=False)
        sources["rewritten"] = Path(restamp)
    (ref_name, reference), *others = backends.items()
    multiple = reference.multiple
    for name, other in others:
        if other.multiple != multiple:
            raise InputError(f"{sources[name]} is for a {other.multiple}-multiple network, {sources[ref_name]} for "
                             f"{multiple}: not the same model")
    size = size or _default_size(backends.values(), multiple)
    from madf.runtime.uint8 import size_multiple
    needed = max(size_multiple(b) for b in backends.values())   # uint8 files take any size; float ones do not
    if size % needed:
        raise InputError(f"--size {size} is not a multiple of {needed} (2^levels), which the float model "
                         f"{', '.join(str(sources[n]) for n, b in backends.items() if size_multiple(b) > 1)} needs")
    precision = max((b.precision for b in backends.values()), key=TOLERANCE.__getitem__)
    if atol is None:
        atol = TOLERANCE[precision]
        if any(b.io == "uint8" for b in backends.values()):
            atol += UINT8_STEP / 2   # a uint8 file rounds to 8 bits: half a level on top of the model's own error
            precision += " + uint8 rounding"
    feeds = photo_feeds(size, count=photos, seed=seed)
    rows, passed = compare(backends, feeds, atol, verbose=verbose)
    click.echo(f"parity: reference {reference.describe()}; {len(feeds)} photos at {size}x{size} with procedural "
               f"masks; tolerance max abs <= {atol:g} ({precision})")
    for _name, other in others:
        click.echo(f"  vs {other.describe()}")
    click.echo(format_table(["backend", "photo", "max abs", "mean abs", "PSNR dB", "hole filled", "verdict"],
                            [[r["backend"], r["input"], f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}",
                              f"{r['psnr']:.1f}", f"{r['filled']:.0%}", "pass" if r["passed"] else "FAIL"]
                             for r in rows]))
    if any(r["filled"] < MIN_FILLED for r in rows):
        click.echo(f"a model left the hole as it was (under {MIN_FILLED:.0%} of its pixels changed): its mask was "
                   f"read with the other polarity or scale (a uint8 file takes mask >= 128 as the hole: a 0/1 mask "
                   f"fills nothing; --invert-mask files take < 128)", err=True)
    if restamp is not None and passed:
        from madf.runtime.restamp import restamp_file
        restamp_file(restamp, sources[ref_name], max(r["max_abs"] for r in rows if r["backend"] == "rewritten"))
        click.echo(f"stamped {restamp}: every madf tool takes it now (its digests are recorded again)")
    if json_path:
        from madf.common.atomic import atomic_path
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps({"reference": {ref_name: str(sources[ref_name])},
                                       "compared": {n: str(sources[n]) for n, _ in others}, "size": size,
                                       "atol": atol, "precision": precision, "passed": passed, "rows": rows},
                                      indent=2))
    return passed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@model_options
@click.option("--size", type=click.IntRange(min=1), default=None,
              help="Photo size (default: a model's fixed size, else 256 within every engine's profile).")
@click.option("--photos", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, help="Seed of the procedural masks.")
@click.option("--atol", type=FloatRange(min=0), default=None,
              help="Max abs error allowed on [0,1] (default: 1e-4 for FP32 models, 5e-2 if any is FP16).")
@click.option("--json", "json_path", type=PATH, default=None, help="Also write the rows here.")
@click.option("--verbose", is_flag=True, help="Show polygraphy's own output statistics.")
@click.option("--restamp", type=PATH, default=None,
              help="An ONNX file rewritten by a tool (onnxslim, ONNX Runtime's optimizer or quantizer): compare it "
                   "with the reference and, if it passes, record its digests again (in place) so madf takes it.")
@CUDA_GRAPH
@OVERWRITE
@torch_options
def main(ckpt, model_path, engine, plugin_libs, device, size, photos, seed, atol, json_path, verbose, restamp,
         cuda_graph, overwrite, torch_options) -> None:
    """Compare two or more of CKPT (PyTorch), MODEL (ONNX Runtime), ENGINE (TensorRT); exit 1 past the tolerance."""
    setup_logging()
    files = given_files(ckpt, model_path, engine)
    if len(files) + bool(restamp) < 2 and not (ckpt and _accelerated(torch_options, cuda_graph)):
        raise click.UsageError("give two of --ckpt, --model, --engine (the first in that order is the reference), "
                               "or --ckpt with --precision / --compile / --channels-last / --cuda-graph")
    with cli_errors():
        if json_path:
            paths.check_output_file(json_path, "--json", inputs=[*files.values(), *([restamp] if restamp else [])],
                                    overwrite=overwrite)
        if restamp is not None:
            paths.check_output_file(restamp, "--restamp", inputs=list(files.values()), overwrite=True)
        passed = parity_report(files, size=size, photos=photos, seed=seed, atol=atol, device=device,
                               json_path=json_path, verbose=verbose, plugin_libs=plugin_libs,
                               torch_options=torch_options, cuda_graph=cuda_graph, restamp=restamp)
    if not passed:
        raise click.ClickException("outputs differ past the tolerance (see table)" +
                                   (f"; {restamp} was not stamped" if restamp else ""))


if __name__ == "__main__":
    main()
