"""madf-data: assemble the bundled real-photo dataset (train/ and heldout/) with no network.

    madf-data --output data/photos
"""
from __future__ import annotations

from pathlib import Path

import click

from .. import paths
from ._common import OVERWRITE, PATH, cli_errors, setup_logging


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--output", default="data/photos", show_default=True, type=PATH)
@OVERWRITE
def main(output: Path, overwrite: bool) -> None:
    """Copy scikit-image's natural photos (and Debian's mate-backgrounds where installed) into OUTPUT/train and
    OUTPUT/heldout; the split is fixed per photo by a hash of its name."""
    setup_logging()
    with cli_errors():
        paths.claim_folder(output, "madf-data", overwrite=overwrite)
        from ..data.assemble import assemble
        split = assemble(output)
    click.echo(f"{output}: {len(split['train'])} training and {len(split['heldout'])} held-out photos")


if __name__ == "__main__":
    main()
