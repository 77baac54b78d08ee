"""madf-data: assemble the bundled real-photo dataset (train/ and heldout/) with no network.

    madf-data --output data/photos
"""
from __future__ import annotations

from pathlib import Path

import click

from madf.cli._common import OVERWRITE, PATH, cli_errors, setup_logging
from madf.common import paths
from madf.data.assemble import MAX_SIDE


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", default="data/photos", show_default=True, type=PATH)
@click.option("--no-download", is_flag=True,
              help="Use only the photo packages installed here (no apt-get download into OUTPUT/.cache).")
@click.option("--max-side", default=MAX_SIDE, show_default=True, type=click.IntRange(min=0),
              help="Shrink photos to this longer side; 0 keeps them at the size they ship at (madf-eval "
                   "--real-size).")
@click.option("--cache", type=PATH, default=None,
              help="Where downloaded packages are unpacked (default OUTPUT/.cache); share it between outputs.")
@OVERWRITE
def main(output: Path, no_download: bool, max_side: int, cache, overwrite: bool) -> None:
    """Gather real photographs into OUTPUT/train and OUTPUT/heldout: scikit-image's, and the curated photos of
    Debian's wallpaper and game-data packages (installed ones, else fetched with apt-get download and unpacked
    with dpkg -x into OUTPUT/.cache; no root needed). Duplicates across packages and sizes are dropped by a
    perceptual hash; OUTPUT/manifest.json records each photo's package and license; the split is fixed per photo
    by a hash of its name."""
    setup_logging()
    with cli_errors():
        paths.claim_folder(output, "madf-data", overwrite=overwrite)
        from madf.data.assemble import assemble
        split = assemble(output, download=not no_download, cache=cache, max_side=max_side)
    click.echo(f"{output}: {len(split['train'])} training and {len(split['heldout'])} held-out photos")
    import collections
    import json
    manifest = json.loads((output / "manifest.json").read_text())
    for key in ("package", "colour"):
        counts = collections.Counter(m[key] for m in manifest)
        click.echo(f"  by {key}: " + ", ".join(f"{k} {v}" for k, v in counts.most_common()))


if __name__ == "__main__":
    main()
