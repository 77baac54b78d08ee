"""Large photos: crop boxes around the holes (merging, border shifting, rounding, the cap), the resize strategy,
the Inpainter batching the pieces and pasting back only hole pixels, an engine's profile capping crops, and the
photo-fidelity side of madf-inpaint (alpha, output formats, --resize-mask) and madf-eval on deployed models."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from madf.inpaint import imaging
from madf.inpaint.backend import BackendBase
from madf.inpaint.inpainter import Inpainter
from madf.inpaint.strategy import Strategy, crop_boxes, pieces
from madf.model.checkpoint import save_checkpoint
from madf.model.network import build_model

from conftest import TINY, random_pair


class Recorder(BackendBase):
    """A backend that fills every hole with mid-grey and records the batches it was given."""
    multiple = 16

    def __init__(self, max_side=None):
        self.calls = []
        if max_side:
            self.max_side = max_side

    def describe(self):
        return "recorder"

    def __call__(self, image, mask):
        self.calls.append(image.shape)
        return np.where(mask >= 0.5, np.float32(0.5), image)


def _hole(h, w, *rects):
    hole = np.zeros((h, w), bool)
    for top, left, bottom, right in rects:
        hole[top:bottom, left:right] = True
    return hole


def _contains(box, rect):
    return box[0] <= rect[0] and box[1] <= rect[1] and box[2] >= rect[2] and box[3] >= rect[3]


def test_one_box_per_region_grown_rounded_and_inside_the_image():
    rects = [(100, 100, 110, 120), (600, 900, 640, 930)]
    boxes = crop_boxes(_hole(1000, 1200, *rects), multiple=16, margin=32)
    assert len(boxes) == 2
    for box, rect in zip(boxes, rects):
        assert _contains(box, rect)
        assert (box[2] - box[0]) % 16 == 0 and (box[3] - box[1]) % 16 == 0
        assert 0 <= box[0] and 0 <= box[1] and box[2] <= 1000 and box[3] <= 1200
    assert boxes[0] == (65, 62, 145, 158)   # 10x20 hole + 2 x 32 margin = 74x84, rounded up to 80x96, centred


def test_boxes_at_the_border_are_shifted_inward():
    (box,) = crop_boxes(_hole(500, 500, (0, 490, 4, 500)), multiple=16, margin=64)
    assert box[0] == 0 and box[3] == 500 and box[2] - box[0] == 144 and box[3] - box[1] == 144


def test_overlapping_boxes_merge_into_disjoint_ones():
    hole = _hole(800, 800, (100, 100, 110, 110), (100, 200, 110, 210), (700, 700, 710, 710))
    boxes = crop_boxes(hole, multiple=16, margin=64)
    assert len(boxes) == 2                       # the two close strokes share one box
    assert _contains(boxes[0], (100, 100, 110, 210))
    a, b = boxes
    assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def test_a_hole_larger_than_the_cap_is_resized_down_and_back():
    hole = _hole(600, 600, (50, 50, 450, 500))
    rgb = random_pair(600, 600)[0]
    (piece,) = pieces(0, rgb, hole, Strategy("crop", margin=64, max_side=256), 16)
    assert piece.scaled == (piece.box[2] - piece.box[0], piece.box[3] - piece.box[1])
    assert max(piece.rgb.shape[:2]) <= 256 and piece.hole.any()


def test_a_hole_larger_than_the_cap_gets_context_around_it():
    """A box of hole alone has no known pixel to fill from (it came back as a flat block): it keeps its margin."""
    hole = _hole(900, 900, (200, 150, 700, 760))
    (box,) = crop_boxes(hole, 16, margin=64, max_side=256)
    top, left, bottom, right = box
    assert top <= 200 - 64 and left <= 150 - 64 and bottom >= 700 + 64 and right >= 760 + 64, box
    assert (~hole[top:bottom, left:right]).mean() > 0.3


@pytest.mark.parametrize("strategy", [Strategy("crop", margin=64, max_side=128), Strategy("resize", max_side=128)],
                         ids=["crop-resized", "resize"])
def test_what_lies_under_the_hole_never_reaches_the_fill(strategy):
    """Two photos that differ only under the hole must come out identical, also when a piece is scaled down (a
    plain resize mixed the hole's old pixels into its border, by up to 70 levels)."""
    net = build_model(TINY, seed=0)
    from madf.inpaint.inpainter import TorchBackend
    rng = np.random.default_rng(3)
    rgb = random_pair(400, 360, seed=3)[0]
    hole = _hole(400, 360, (60, 50, 330, 300))
    other = rgb.copy()
    other[hole] = rng.integers(0, 256, (int(hole.sum()), 3), dtype=np.uint8)
    inpainter = Inpainter(TorchBackend(net), strategy=strategy)
    a, b = inpainter(rgb, hole), inpainter(other, hole)
    print(strategy.name, "max difference", int(np.abs(a.astype(int) - b).max()))
    assert np.array_equal(a, b)


def test_a_serpentine_hole_is_one_region():
    """One winding stroke (its regions used to be found by a loop quadratic on such a mask) gives one box."""
    hole = np.zeros((400, 400), bool)
    for i, y in enumerate(range(8, 392, 24)):
        hole[y:y + 8, 8:392] = True
        x = 384 if i % 2 == 0 else 8
        hole[y:y + 32, x:x + 8] = True
    hole[392:] = False
    boxes = crop_boxes(hole, 16, margin=0, max_side=1024)
    assert len(boxes) == 1 and _contains(boxes[0], (8, 8, 392, 392)), boxes


@pytest.mark.parametrize("strategy", ["crop", "resize", "full"])
def test_known_pixels_stay_bit_exact_and_holes_are_filled(strategy):
    rgb = random_pair(300, 420, seed=1)[0]
    hole = _hole(300, 420, (10, 10, 30, 40), (250, 380, 290, 410), (140, 200, 150, 260))
    backend = Recorder()
    out = Inpainter(backend, strategy=Strategy(strategy, margin=16, max_side=128, match_border=False))(rgb, hole)
    assert np.array_equal(out[~hole], rgb[~hole])
    if strategy == "resize":   # filled at a quarter of the size, then scaled up: grey, blended at the edges
        assert abs(out[hole].mean() - 128) < 8
    else:
        assert (out[hole] == 128).all()
    sides = [max(shape[2:]) for shape in backend.calls]
    print(strategy, "network inputs", backend.calls)
    if strategy == "full":
        assert backend.calls == [(1, 3, 304, 432)]
    else:
        assert max(sides) <= 128


def test_crops_of_one_padded_size_share_a_batch():
    rgb = random_pair(400, 400, seed=2)[0]
    hole = _hole(400, 400, (20, 20, 24, 24), (20, 300, 24, 304), (300, 20, 304, 24), (300, 300, 304, 304))
    backend = Recorder()
    Inpainter(backend, batch_size=4, strategy=Strategy("crop", margin=8))(rgb, hole)
    assert backend.calls == [(4, 3, 32, 32)]   # four 32x32 crops, one call


def test_auto_runs_small_photos_whole_and_large_ones_in_crops():
    small, large = Recorder(), Recorder()
    Inpainter(small)(random_pair(200, 200)[0], _hole(200, 200, (10, 10, 20, 20)))
    Inpainter(large)(random_pair(900, 1000)[0], _hole(900, 1000, (10, 10, 20, 20)))
    assert small.calls == [(1, 3, 208, 208)]
    assert max(large.calls[0][2:]) < 900


def test_an_engine_profile_caps_the_crops():
    engine = Recorder(max_side=64)   # as a TensorRT backend whose profile stops at 64x64
    inpainter = Inpainter(engine, strategy=Strategy("full"))
    out = inpainter(random_pair(200, 200)[0], _hole(200, 200, (50, 50, 70, 70)))
    assert out.shape == (200, 200, 3) and max(max(s[2:]) for s in engine.calls) <= 64


# ---- madf-inpaint: photo fidelity, madf-eval on deployed models -----------------------------------------------------

@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("strategy") / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    return path


def _inpaint(*args):
    from madf.cli.inpaint import main
    return CliRunner().invoke(main, [str(a) for a in args] + ["--quiet"])


def test_alpha_is_kept_and_formats_follow_the_name(ckpt, tmp_path):
    rgb, hole = random_pair(32, 48, seed=3)
    alpha = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (32, 1))
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "logo.png")
    imaging.write_png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))
    formats = {"o.png": "PNG", "o.webp": "WEBP", "o.tif": "TIFF", "o.jpg": "JPEG"}
    for name, fmt in formats.items():
        extra = ["--quality", "90"] if fmt == "JPEG" else []
        result = _inpaint("--ckpt", ckpt, "--image", tmp_path / "logo.png", "--mask", tmp_path / "hole.png",
                          "--output", tmp_path / name, *extra)
        assert result.exit_code == 0, result.output
        written = Image.open(tmp_path / name)
        assert written.format == fmt
        if fmt != "JPEG":   # lossless with alpha: alpha copied, known RGB bit-exact
            arr = np.asarray(written.convert("RGBA"))
            assert np.array_equal(arr[..., 3], alpha), fmt
            assert np.array_equal(arr[..., :3][~hole], rgb[~hole]), fmt   # WebP is written lossless
        else:
            assert written.mode == "RGB"


@pytest.mark.parametrize("mode", ["L", "1", "I;16", "LA"])
def test_gray_photos_come_out_gray_with_their_profile(ckpt, tmp_path, mode):
    """A gray (or 1-bit, 16-bit, gray + alpha) photo's result is gray, not RGB with a tinted fill, and keeps the
    photo's ICC profile; its known pixels are the photo's values."""
    from PIL import ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    rgb, hole = random_pair(40, 56, seed=5)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    photo = Image.fromarray(gray)
    photo = {"L": photo, "1": photo.convert("1"), "I;16": Image.fromarray(gray.astype(np.uint16) * 257),
             "LA": Image.merge("LA", [photo, Image.new("L", photo.size, 200)])}[mode]
    photo.save(tmp_path / "gray.png", icc_profile=icc)
    imaging.write_png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))
    result = _inpaint("--ckpt", ckpt, "--image", tmp_path / "gray.png", "--mask", tmp_path / "hole.png",
                      "--output", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    written = Image.open(tmp_path / "out.png")
    assert written.mode == ("LA" if mode == "LA" else "L"), written.mode
    assert written.info.get("icc_profile") == icc
    known = imaging.read_image(tmp_path / "gray.png")[..., 0][~hole]   # 16 bits scaled, not clipped
    assert np.array_equal(np.asarray(written.convert("L"))[~hole], known)


def test_jpeg_results_say_they_are_lossy(ckpt, tmp_path, caplog):
    rgb, hole = random_pair(32, 48, seed=6)
    Image.fromarray(rgb).save(tmp_path / "p.png")
    imaging.write_png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))
    from madf.cli.inpaint import main
    result = CliRunner().invoke(main, ["--ckpt", str(ckpt), "--image", str(tmp_path / "p.png"), "--mask",
                                       str(tmp_path / "hole.png"), "--output", str(tmp_path / "o.jpg")])
    assert result.exit_code == 0, result.output
    assert "JPEG is lossy" in result.output + caplog.text


def test_a_resized_mask_is_refused_unless_asked_to_resize(ckpt, tmp_path):
    rgb, _ = random_pair(64, 96)
    imaging.write_png(tmp_path / "photo.png", rgb)
    small = _hole(32, 48, (10, 10, 20, 20))
    imaging.write_png(tmp_path / "hole.png", (small * 255).astype(np.uint8))
    args = ["--ckpt", ckpt, "--image", tmp_path / "photo.png", "--mask", tmp_path / "hole.png"]
    result = _inpaint(*args, "--output", tmp_path / "a.png")
    assert result.exit_code == 1 and "add --resize-mask to nearest-resize the mask" in result.output
    result = _inpaint(*args, "--output", tmp_path / "b.png", "--resize-mask")
    assert result.exit_code == 0, result.output
    hole = imaging.resize_mask(small, 64, 96)
    assert np.array_equal(imaging.read_image(tmp_path / "b.png")[~hole], rgb[~hole])


def test_madf_inpaint_crop_strategy_end_to_end(ckpt, tmp_path):
    rgb = random_pair(200, 260, seed=8)[0]
    hole = _hole(200, 260, (20, 20, 30, 40), (150, 200, 170, 220))
    imaging.write_png(tmp_path / "big.png", rgb)
    imaging.write_png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))
    result = _inpaint("--ckpt", ckpt, "--image", tmp_path / "big.png", "--mask", tmp_path / "hole.png", "--output",
                      tmp_path / "out.png", "--strategy", "crop", "--margin", "16")
    assert result.exit_code == 0, result.output
    out = imaging.read_image(tmp_path / "out.png")
    assert np.array_equal(out[~hole], rgb[~hole]) and not np.array_equal(out[hole], rgb[hole])


def test_madf_eval_on_an_onnx_model(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    from madf.cli.eval import main as eval_main
    from madf.export.onnx import ExportOptions, export_onnx
    from madf.model.checkpoint import load_checkpoint
    export_onnx(load_checkpoint(ckpt), tmp_path / "m.onnx", ExportOptions(fp16=True))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        imaging.write_png(photos / f"p{i}.png", random_pair(40, 40, seed=i)[0])
    result = CliRunner().invoke(eval_main, ["--model", str(tmp_path / "m.onnx"), "--images", str(photos),
                                            "--output", str(tmp_path / "eval"), "--size", "32", "--no-baselines",
                                            "--per-bucket", "1"])
    assert result.exit_code == 0, result.output
    assert "madf-eval: m.onnx" in result.output and "Model: onnxruntime" in result.output
    import json
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["backend"] == "onnxruntime" and report["summary"]
