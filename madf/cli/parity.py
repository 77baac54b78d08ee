"""madf-parity: compare an exported model with the PyTorch reference on real photos and procedural masks.

    madf-parity --ckpt places2.pth --model places2.onnx              # tolerance from the model's precision
    madf-parity --ckpt places2.pth --model places2-fp16.onnx --atol 0.05 --json parity.json

polygraphy runs both (one runner per backend) and judges with its comparator; the table gives max / mean abs error
and PSNR between outputs on [0,1]. Exit status 1 past the tolerance.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from ._common import cli_errors, format_table, setup_logging
from .backends import open_backend


def parity_report(ckpt: Path, model: Path, size: Optional[int] = None, photos: int = 3, seed: int = 0,
                  atol: Optional[float] = None, device: str = "cpu", json_path: Optional[Path] = None,
                  verbose: bool = False) -> bool:
    """Print the comparison table; return whether it passed. Raises MADFError subclasses on bad input."""
    from madf.errors import InputError
    from madf.runtime.parity import TOLERANCE, compare, photo_feeds
    reference = open_backend("torch", ckpt=ckpt, device=device)
    other = open_backend("onnxruntime", model=model, device=device)
    multiple = reference.multiple
    if other.multiple != multiple:
        raise InputError(f"{model} is for a {other.multiple}-multiple network, {ckpt} for {multiple}: not the same "
                         f"model")
    size = size or (other.fixed_size[0] if other.fixed_size else max(256, 2 * multiple))
    if size % multiple:
        raise InputError(f"--size {size} is not a multiple of {multiple} (2^levels)")
    precision = other.metadata.get("madf.precision", "fp32")
    atol = TOLERANCE[precision] if atol is None else atol
    feeds = photo_feeds(size, count=photos, seed=seed)
    rows, passed = compare({"torch": reference, "onnxruntime": other}, feeds, atol, verbose=verbose)
    click.echo(f"parity: {reference.describe()}  vs  {other.describe()}; {len(feeds)} photos at {size}x{size} with "
               f"procedural masks; tolerance max abs <= {atol:g} ({precision})")
    click.echo(format_table(["photo", "max abs", "mean abs", "PSNR dB", "verdict"],
                            [[r["input"], f"{r['max_abs']:.3e}", f"{r['mean_abs']:.3e}", f"{r['psnr']:.1f}",
                              "pass" if r["passed"] else "FAIL"] for r in rows]))
    if json_path:
        from madf.atomic import atomic_path
        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps({"reference": str(ckpt), "model": str(model), "size": size, "atol": atol,
                                       "precision": precision, "passed": passed, "rows": rows}, indent=2))
    return passed


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--ckpt", required=True, type=click.Path(path_type=Path), help="The PyTorch reference weights.")
@click.option("--model", required=True, type=click.Path(path_type=Path), help="ONNX file from madf-export.")
@click.option("--size", type=int, default=None, help="Photo size (default: the model's fixed size, else 256).")
@click.option("--photos", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, help="Seed of the procedural masks.")
@click.option("--atol", type=float, default=None,
              help="Max abs error allowed on [0,1] (default: 1e-4 for FP32 models, 5e-2 for FP16).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Also write the rows here.")
@click.option("--verbose", is_flag=True, help="Show polygraphy's own output statistics.")
def main(ckpt, model, size, photos, seed, atol, device, json_path, verbose) -> None:
    """Compare MODEL (ONNX Runtime) with CKPT (PyTorch) on real photos; exit 1 past the tolerance."""
    setup_logging()
    with cli_errors():
        passed = parity_report(ckpt, model, size=size, photos=photos, seed=seed, atol=atol, device=device,
                               json_path=json_path, verbose=verbose)
    if not passed:
        raise click.ClickException("outputs differ past the tolerance (see table)")


if __name__ == "__main__":
    main()
