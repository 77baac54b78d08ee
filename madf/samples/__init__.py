"""A real photo and a hand-drawn-style mask that ship with the package: the README's first command runs on them.

``flower.jpg``: FreshFlower.jpg of Debian's mate-backgrounds (GPL-2+), scaled to 1200 x 902; it is held out from the
bundled model's training (madf-data's split). ``flower-mask.png``: white = hole, drawn by benchmarks/front_page.py.
"""
from pathlib import Path

FLOWER = Path(__file__).parent / "flower.jpg"
FLOWER_MASK = Path(__file__).parent / "flower-mask.png"
