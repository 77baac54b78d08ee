"""Weights that ship with the package: a small MADF trained on the bundled photos (docs/training.md, "The bundled
model").

It is the demo's default and a real trained network for tests of the whole path; it is small (5 levels, width
0.25) and was trained briefly on CPU, so it is no substitute for the official Places2 / CelebA / Paris StreetView
models.
"""
from pathlib import Path

BUNDLED = Path(__file__).parent / "madf-small-photos.safetensors"


def describe_bundled() -> str:
    from safetensors import safe_open
    with safe_open(str(BUNDLED), framework="pt") as fh:
        meta = fh.metadata() or {}
    return (f"bundled {BUNDLED.name} ({meta.get('training', 'trained on the bundled photos')}); the photos below "
            f"are held out from its training")
