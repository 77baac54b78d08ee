"""The manual cannot rot: the README stays a front page (<= 16 kB), every relative link in it and in docs/ resolves
(files and #anchors), and every bash block marked runnable runs, in document order, in a folder of tiny inputs:
a few real photos of a size the network must pad, their masks, a tiny network saved as an official-format
places2.pth and its places2.onnx (left out for pages that export their own).
A block fails the test with its page, line and output."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from madf.model.network import build_model

from conftest import TINY, write_official_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
MARKER = "<!-- runnable"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(page: Path):
    """(line, kind, text, runnable) of every fenced block of a page."""
    lines = page.read_text().split("\n")
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(1):
            start, body = i, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            marked = start > 0 and lines[start - 1].startswith(MARKER)
            yield start + 1, m.group(1), "\n".join(body), marked
        i += 1


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {slug(line.lstrip("#")) for line in text.split("\n") if re.match(r"^#{1,6} ", line)}


def test_readme_is_a_front_page():
    size = len((ROOT / "README.md").read_bytes())
    print(f"README.md: {size} bytes")
    assert size <= 16 * 1024
    text = (ROOT / "README.md").read_text()
    # the two set-up commands open it
    first = next(body for _, kind, body, _ in blocks(ROOT / "README.md") if kind == "bash")
    assert "bash scripts/demo.sh" in first and "bash scripts/test.sh" in first
    for page in (ROOT / "docs").glob("*.md"):
        if page.name != "README.md":
            assert f"docs/{page.name}" in text, f"the README does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    dead = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            dead.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            dead.append(f"{target} (no such heading)")
    assert not dead, f"{page.relative_to(ROOT)}: dead links {dead}"


def test_docs_start_with_the_task():
    for page in set((ROOT / "docs").glob("*.md")) - {ROOT / "docs" / "README.md"}:  # the index lists tasks
        lines = [line for line in page.read_text().split("\n") if line.strip()]
        assert lines[0].startswith("# ") and lines[1].startswith("*"), f"{page.name} does not open with its task"


@pytest.fixture(scope="session")
def inputs(tmp_path_factory):
    """The files the manual's examples name, small enough for 2 CPU cores."""
    pytest.importorskip("onnx")
    from madf.data.masks import free_form_mask
    from madf.data.photos import sample_photos
    from madf.export.onnx import export_onnx
    folder = tmp_path_factory.mktemp("doc-inputs")
    (folder / "photos").mkdir()
    (folder / "masks").mkdir()
    sizes = [(76, 92)] * 3  # not multiples of 2^levels (padding); one size, so one mask serves the folder
    for i, (photo, (h, w)) in enumerate(zip(sample_photos(), sizes)):
        with Image.open(photo) as src:
            image = src.convert("RGB").resize((w, h))
        mask = Image.fromarray(np.where(free_form_mask(h, w, seed=i), 255, 0).astype(np.uint8))
        image.save(folder / "photos" / f"p{i}.jpg", quality=95)
        mask.save(folder / "masks" / f"p{i}.png")
        if i == 0:
            image.save(folder / "photo.jpg", quality=95)
            mask.save(folder / "hole.png")
            mask.resize((w, h)).save(folder / "one_mask.png")
    net = build_model(TINY, seed=0)
    write_official_checkpoint(net, folder / "places2.pth", optimizer_state=False)
    export_onnx(net, folder / "places2.onnx")
    return folder


def runnable():
    for page in PAGES:
        for line, kind, body, marked in blocks(page):
            if marked:
                assert kind == "bash", f"{page}:{line}: only bash blocks can be marked runnable"
                yield page, line, body


def test_runnable_blocks_are_found():
    found = list(runnable())
    print(f"{len(found)} runnable blocks in {len({p for p, _, _ in found})} pages")
    assert len(found) >= 8


@pytest.mark.parametrize("page", sorted({p for p, _, _ in runnable()}), ids=lambda p: str(p.relative_to(ROOT)))
def test_runnable_blocks_run(page, inputs, tmp_path):
    """Each page's marked blocks, in order, in one fresh copy of the inputs (later blocks may use earlier results)."""
    work = tmp_path / "work"
    shutil.copytree(inputs, work)
    page_blocks = [b for b in runnable() if b[0] == page]
    if any("madf-export" in body for _, _, body in page_blocks):
        (work / "places2.onnx").unlink()  # the page makes its own
    (work / ".venv").symlink_to(Path(sys.prefix))
    (work / "madf").symlink_to(ROOT / "madf")
    env = dict(os.environ, PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2")
    for _, line, body in page_blocks:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=work, env=env, capture_output=True,
                             text=True, timeout=600)
        where = f"{page.relative_to(ROOT)}:{line}"
        print(f"--- {where}: exit {run.returncode}\n{run.stdout[-1500:]}{run.stderr[-1500:]}")
        assert run.returncode == 0, (f"{where} failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n"
                                     f"{run.stderr[-3000:]}")
