"""Photos at real sizes: hole thickness, the scale-aware ``auto`` strategy, the model's training size carried from
training to the strategy, masks drawn against it, scores inside the hole and ``madf-eval --real-size``."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from madf.data.photo_masks import KINDS, THICKNESS_BUCKETS, photo_masks, thickness_bucket_of
from madf.inpaint import imaging
from madf.inpaint.backend import BackendBase
from madf.inpaint.inpainter import Inpainter, TorchBackend, train_size
from madf.inpaint.strategy import Strategy, pieces, plan, plan_boxes, thickness
from madf.model.checkpoint import load_checkpoint, save_checkpoint
from madf.model.config import ModelConfig
from madf.model.network import build_model
from madf.training.real_size import hole_psnr, hole_ssim

from conftest import TINY


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _line(h, w, width, points):
    canvas = Image.new("L", (w, h), 0)
    ImageDraw.Draw(canvas).line(points, fill=255, width=width)
    return np.asarray(canvas) >= 128


def test_thickness_is_the_widest_disc_the_hole_holds():
    disc = _disc(600, 800, 300, 400, 100)
    assert abs(thickness(disc, (0, 0, 600, 800)) - 200) <= 4
    stroke = _line(600, 800, 12, [(10, 300), (790, 320)])   # long but thin
    assert abs(thickness(stroke, (0, 0, 600, 800)) - 12) <= 3
    big = _disc(3000, 4000, 1500, 2000, 400)   # measured on a coarse grid past EDT_SIDE: still near 800
    assert abs(thickness(big, (0, 0, 3000, 4000)) - 800) <= 16


def test_auto_scales_a_thick_hole_down_to_the_reach_and_leaves_a_thin_one_alone():
    hole = _disc(1200, 2400, 500, 500, 200) | _line(1200, 2400, 10, [(1900, 1000), (2300, 1100)])
    boxes = plan_boxes(hole, multiple=16, margin=64, max_side=1024, thickest=64)
    assert len(boxes) == 2
    scales = sorted(scale for _, scale, _ in boxes)
    print("scales", scales, "boxes", boxes)
    assert scales[1] == 1.0                              # the 10 px stroke: full resolution
    assert abs(scales[0] - 64 / 400) < 0.01              # the 400 px disc: scaled to a 64 px hole
    disc_box = next(box for box, scale, _ in boxes if scale < 1)
    # 64 working pixels of context each way are 400 native pixels
    assert disc_box[0] <= 300 - 390 or disc_box[0] == 0
    assert disc_box[2] - disc_box[0] >= 400 + 2 * 390 or disc_box[2] == 1200
    covered = np.zeros_like(hole, int)
    for (t, l, b, r), _, _ in boxes:
        covered[t:b, l:r] += 1
    assert (covered[hole] == 1).all()                    # every hole pixel in exactly one box


def test_a_thin_stroke_beside_a_blob_keeps_full_resolution_and_each_box_fills_its_own():
    hole = _disc(800, 800, 300, 300, 150) | _line(800, 800, 6, [(470, 300), (600, 320)])
    boxes = plan_boxes(hole, multiple=16, margin=64, max_side=1024, thickest=64)
    assert sorted(round(scale, 2) for _, scale, _ in boxes) == [round(64 / 300, 2), 1.0]
    (blob_box,) = [box for box, scale, _ in boxes if scale < 1]
    (stroke_box,) = [box for box, scale, _ in boxes if scale == 1]
    assert blob_box[0] < stroke_box[2] and stroke_box[0] < blob_box[2]   # they overlap, and stay apart
    pieces_ = pieces(0, np.zeros((800, 800, 3), np.uint8), hole, Strategy(train_size=256), 16)
    filled = np.zeros((800, 800), int)
    for piece in pieces_:
        t, l, b, r = piece.box
        own = piece.own if piece.own is not None else piece.hole
        filled[t:b, l:r] += own
        assert piece.hole.sum() >= (own.sum() if piece.scaled is None else 0)
    assert (filled[hole] == 1).all() and (filled[~hole] == 0).all()   # each hole pixel pasted exactly once


def test_boxes_that_meet_at_a_like_scale_merge():
    hole = _disc(800, 900, 300, 300, 150) | _disc(800, 900, 300, 630, 140)
    ((box, scale, ids),) = plan_boxes(hole, multiple=16, margin=64, max_side=1024, thickest=64)
    assert abs(scale - 64 / 300) < 0.02 and ids == [0, 1]
    assert box[1] <= 150 and box[3] >= 700


def test_small_photos_with_thin_holes_still_run_whole():
    hole = _line(300, 400, 8, [(20, 20), (380, 280)])
    mode, boxes, _ = plan(hole, Strategy(), 16)
    assert mode == "full" and boxes == [((0, 0, 300, 400), 1.0, None)]
    thick = _disc(300, 400, 150, 200, 90)
    mode, ((_, scale, _),), _ = plan(thick, Strategy(), 16)
    assert mode == "auto" and scale == pytest.approx(64 / 180, abs=0.02)


class Grey(BackendBase):
    """A backend that fills holes with mid-grey: what reaches the network, and that known pixels survive."""
    multiple = 16
    config = {"train_size": 64}

    def __init__(self):
        self.shapes = []

    def describe(self):
        return "grey"

    def __call__(self, image, mask):
        self.shapes.append(image.shape)
        return np.where(mask >= 0.5, np.float32(0.5), image)


def test_auto_keeps_known_pixels_bit_exact_and_fills_at_the_models_training_size():
    backend = Grey()
    # no border matching: on a noise photo it carries the noisy border into the fill, and this checks the grey
    inpainter = Inpainter(backend, strategy=Strategy(match_border=False))
    assert inpainter.strategy.train_size == 64 and inpainter.strategy.thickest == 16
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    hole = _disc(240, 320, 120, 160, 60)
    out = inpainter(rgb, hole)
    assert np.array_equal(out[~hole], rgb[~hole])
    assert (out[hole] > 100).all() and (out[hole] < 156).all()   # filled (grey, resampled), not left alone
    (shape,) = backend.shapes
    print("network input", shape, "for a 120 px hole at train size 64")
    assert max(shape[2:]) < 240                          # the network saw a scaled-down piece


def test_what_lies_under_a_scaled_hole_never_reaches_the_fill():
    net = build_model(TINY, seed=0)
    inpainter = Inpainter(TorchBackend(net), strategy=Strategy(train_size=64))
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
    hole = _disc(192, 256, 96, 128, 50)
    other = rgb.copy()
    other[hole] = 255 - other[hole]
    a, b = inpainter(rgb, hole), inpainter(other, hole)
    assert inpainter.strategy.thickest == 16 and plan(hole, inpainter.strategy, 16)[1][0][1] < 1
    assert np.array_equal(a[~hole], rgb[~hole]) and np.array_equal(b[~hole], other[~hole])
    assert np.array_equal(a[hole], b[hole])


def test_training_size_travels_from_training_to_the_strategy(tmp_path):
    net = build_model(ModelConfig(levels=4, width=0.125, train_size=96), seed=0)
    save_checkpoint(net, tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config.train_size == 96
    assert Inpainter(TorchBackend(loaded)).strategy.train_size == 96
    assert train_size(Grey()) == 64 and train_size(BackendBase()) == 256   # no config recorded: the official
    assert ModelConfig.from_dict({"levels": 4}).train_size == 256     # configs written before the field
    with pytest.raises(ValueError, match="train_size"):
        ModelConfig(train_size=0)


def test_photo_masks_land_in_their_buckets_and_repeat_exactly():
    masks = photo_masks(600, 800, 256, seed=3, name="garden.jpg")
    assert {kind for kind, _, _ in masks} == set(KINDS)
    for kind, bucket, hole in masks:
        measured = thickness(hole, (0, 0) + hole.shape) / 256
        assert thickness_bucket_of(measured) == bucket, (kind, bucket, measured)
    again = photo_masks(600, 800, 256, seed=3, name="garden.jpg")
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(masks, again))
    other = photo_masks(600, 800, 256, seed=4, name="garden.jpg")
    assert not all(np.array_equal(a[2], b[2]) for a, b in zip(masks, other))
    small = photo_masks(120, 160, 256, seed=3, name="tiny.jpg")   # no room for holes thicker than 40 px
    assert small and all(bucket[1] <= THICKNESS_BUCKETS[0][1] for _, bucket, _ in small)


def test_scores_in_the_hole_see_only_the_hole():
    rng = np.random.default_rng(2)
    ref = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    hole = _disc(64, 80, 32, 40, 12)
    assert hole_psnr(ref, ref, hole) == float("inf") and hole_ssim(ref, ref, hole) == pytest.approx(1.0)
    outside = ref.copy()
    outside[~hole] = 0
    assert hole_psnr(ref, outside, hole) == float("inf")
    inside = ref.copy()
    inside[hole] = np.clip(inside[hole].astype(int) + 10, 0, 255)
    p = hole_psnr(ref, inside, hole)
    print("10 levels off in the hole:", p, "dB")
    assert 27 < p < 29.5 and hole_ssim(ref, inside, hole) < 1.0


def test_madf_eval_real_size_writes_a_table_and_the_worst_cases(tmp_path):
    from madf.cli.eval import main as eval_main
    net = build_model(ModelConfig(levels=4, width=0.125, train_size=64), seed=0)
    save_checkpoint(net, tmp_path / "m.safetensors")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(150, 200), (130, 170)]):
        base = np.linspace(40, 200, w)[None, :, None] + rng.normal(0, 6, (h, w, 3))
        imaging.write_png(photos / f"p{i}.png", np.clip(base, 0, 255).astype(np.uint8))
    (photos / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(eval_main, ["--ckpt", str(tmp_path / "m.safetensors"), "--images", str(photos),
                                            "--real-size", "--strategy", "auto", "--strategy", "crop",
                                            "--worst", "3", "--output", str(tmp_path / "ev")])
    print(result.output)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["train_size"] == 64
    assert set(report["summary"]["ALL"]) == {"madf", "madf crop", "telea", "navier-stokes", "n"}
    assert report["summary"]["ALL"]["n"] == len(report["samples"]) > 4
    assert "| thickness (0,0.125] |" in (tmp_path / "ev" / "eval.md").read_text()
    grid = Image.open(tmp_path / "ev" / "worst.png")
    assert grid.size == (6 * 256, 3 * 256)   # input, two madf columns, two OpenCV columns, truth
    again = CliRunner().invoke(eval_main, ["--ckpt", str(tmp_path / "m.safetensors"), "--images", str(photos),
                                           "--real-size", "--output", str(tmp_path / "ev")])
    assert again.exit_code != 0 and "--overwrite" in again.output
    mixed = CliRunner().invoke(eval_main, ["--ckpt", "m", "--images", str(photos), "--real-size", "--fid"])
    assert mixed.exit_code == 2 and "--real-size" in mixed.output


def test_grey_photos_stored_as_rgb_get_grey_fills():
    net = build_model(TINY, seed=0)
    inpainter = Inpainter(TorchBackend(net))
    rng = np.random.default_rng(4)
    grey = np.repeat(rng.integers(0, 256, (64, 80, 1), dtype=np.uint8), 3, axis=2)
    hole = _disc(64, 80, 32, 40, 14)
    out = inpainter(grey, hole)
    assert np.array_equal(out[~hole], grey[~hole])
    assert (out[hole][:, 0] == out[hole][:, 1]).all() and (out[hole][:, 1] == out[hole][:, 2]).all()
    colour = grey.copy()
    colour[0, 0, 0] ^= 1   # one known pixel with chroma: a colour photo, its fill left as the network made it
    tinted = inpainter(colour, hole)
    print("chroma of the colour photo's fill:", int(np.ptp(tinted[hole].astype(int), axis=1).max()))
    assert np.ptp(tinted[hole].astype(int), axis=1).max() > 0


def test_a_fill_off_in_colour_is_matched_to_its_border_from_known_pixels_only():
    from madf.inpaint.seams import match_border
    h, w = 160, 200
    ramp = np.linspace(60, 190, w)[None, :, None] * np.ones((h, 1, 3))
    truth = np.clip(ramp + np.array([10, 0, -10]), 0, 255).astype(np.uint8)
    hole = _disc(h, w, 80, 100, 30) | _line(h, w, 6, [(20, 20), (60, 140)])
    filled = truth.copy()
    filled[hole] = np.clip(truth[hole].astype(int) + np.array([9, -13, 4]), 0, 255)   # a cast, like the flower's
    matched = match_border(filled, truth, hole)
    before, after = hole_psnr(truth, filled, hole), hole_psnr(truth, matched, hole)
    print(f"hole PSNR {before:.2f} -> {after:.2f} dB")
    assert after > before + 10
    assert np.array_equal(matched[~hole], filled[~hole])           # only hole pixels change
    planted = truth.copy()
    planted[hole] = 0                                               # what lies under the hole is never read
    assert np.array_equal(match_border(filled, planted, hole), matched)
    assert np.array_equal(match_border(filled, truth, np.zeros_like(hole)), filled)


@pytest.mark.parametrize("radius", [24, 90])   # 90: thicker than MEMBRANE_SIDE, solved on a coarser grid
def test_a_flat_fill_in_a_ramp_is_carried_to_the_ramp_by_the_membrane(radius):
    from madf.inpaint.seams import MEMBRANE_SIDE, match_border
    h, w = 220, 260
    ramp = (np.linspace(40, 200, w)[None, :, None] + np.linspace(0, 30, h)[:, None, None]
            + np.array([0, 8, -8])).astype(np.uint8)
    hole = _disc(h, w, 110, 130, radius) | _line(h, w, 5, [(10, 10), (200, 40)])
    hole[:4, 100:140] = True   # a region on the picture's edge: no flux across it
    assert (2 * radius > MEMBRANE_SIDE) == (radius == 90)
    filled = ramp.copy()
    filled[hole] = 128   # a fill that knows nothing of the gradient
    matched = match_border(filled, ramp, hole)
    error = np.abs(matched[hole].astype(int) - ramp[hole])
    print(f"radius {radius}: max error {error.max()}, mean {error.mean():.3f} levels")
    assert error.max() <= 2 and error.mean() < 0.6   # a linear ramp is harmonic: the membrane restores it
    assert np.array_equal(matched[~hole], filled[~hole])


def test_the_pipeline_matches_borders_unless_told_not_to():
    backend = Grey()
    rgb = np.full((96, 128, 3), 200, np.uint8)
    hole = _disc(96, 128, 48, 64, 20)
    matched = Inpainter(backend, strategy=Strategy("full"))(rgb, hole)
    raw = Inpainter(backend, strategy=Strategy("full", match_border=False))(rgb, hole)
    assert (raw[hole] == 128).all()
    assert np.abs(matched[hole].astype(int) - 200).max() <= 1    # the grey fill shifted to the border's 200
