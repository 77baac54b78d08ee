"""The command-line tools walked through bad and unusual inputs, grouped by what could go wrong:

1. data loss: a tool never overwrites one of its inputs, and never replaces earlier results without --overwrite;
2. silently wrong output: every image mode is converted correctly or refused, non-finite weights or outputs are an
   error naming the file;
3. tracebacks: every failure is one line saying what to do, checked before the expensive work; folder runs go on
   past one bad file; nothing half-written (no temp file) is left behind.

Each case asserts the exit status, the one-line message, and that the files that must survive did.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from madf.inpaint import imaging
from madf.inpaint.backend import BackendBase
from madf.model.checkpoint import save_checkpoint
from madf.model.network import build_model

from conftest import TINY, random_pair


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    return path


@pytest.fixture
def pair(tmp_path):
    """photo.png and hole.png (16x24) in tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    image, hole = random_pair(16, 24, seed=3)
    imaging.write_png(folder / "photo.png", image)
    imaging.write_png(folder / "hole.png", (hole * 255).astype(np.uint8))
    return folder / "photo.png", folder / "hole.png"


def run(command, *args):
    """Invoke a console script in-process; returns click's result."""
    import importlib
    main = importlib.import_module(f"madf.cli.{command}").main
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)


def one_line_error(result, match, code=1):
    """Exit status `code`, no traceback, and one 'Error:' line containing `match`."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    errors = [line for line in result.output.splitlines() if "Error" in line]
    assert "Traceback" not in result.output
    assert len(errors) == 1 and match in errors[0], result.output
    return errors[0]


def digest(*paths):
    return [p.read_bytes() for p in paths]


def inpaint(ckpt, image, mask, output, *extra):
    return run("inpaint", "--ckpt", ckpt, "--image", image, "--mask", mask, "--output", output, "--quiet", *extra)


# ---- 1. data loss ------------------------------------------------------------------------------------------------

def test_output_that_is_an_input_is_refused(ckpt, pair, tmp_path):
    image, mask = pair
    before = digest(image, mask)
    one_line_error(inpaint(ckpt, image, mask, image), "is one of the inputs")
    one_line_error(inpaint(ckpt, image, mask, mask), "is one of the inputs")
    # a folder output: photo.png would land on the input itself
    one_line_error(inpaint(ckpt, image, mask, image.parent), "is one of the inputs")
    assert digest(image, mask) == before


def test_folder_output_that_is_an_input_folder_is_refused(ckpt, tmp_path):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    image, hole = random_pair(16, 16)
    imaging.write_png(imgs / "a.png", image)
    imaging.write_png(masks / "a.png", (hole * 255).astype(np.uint8))
    before = digest(imgs / "a.png", masks / "a.png")
    one_line_error(inpaint(ckpt, imgs, masks, imgs), "is the input folder")
    one_line_error(inpaint(ckpt, imgs, masks, masks), "is the input folder")
    assert digest(imgs / "a.png", masks / "a.png") == before


def test_empty_output_is_refused_and_nothing_lands_in_the_current_folder(ckpt, pair, tmp_path, monkeypatch):
    image, mask = pair
    monkeypatch.chdir(image.parent)
    before = sorted(os.listdir())
    result = inpaint(ckpt, image, mask, "")
    one_line_error(result, "is empty", code=2)
    assert sorted(os.listdir()) == before


def test_existing_results_need_overwrite(ckpt, pair, tmp_path):
    image, mask = pair
    out = tmp_path / "out.png"
    out.write_bytes(b"an earlier result")
    one_line_error(inpaint(ckpt, image, mask, out), "exists; add --overwrite")
    assert out.read_bytes() == b"an earlier result"
    assert inpaint(ckpt, image, mask, out, "--overwrite").exit_code == 0
    assert imaging.read_image(out).shape == (16, 24, 3)


def test_existing_results_in_a_folder_run_need_overwrite(ckpt, tmp_path):
    imgs, out = tmp_path / "imgs", tmp_path / "out"
    imgs.mkdir(), out.mkdir()
    for stem in ("a", "b"):
        imaging.write_png(imgs / f"{stem}.png", random_pair(16, 16)[0])
    mask = tmp_path / "mask.png"
    imaging.write_png(mask, (random_pair(16, 16)[1] * 255).astype(np.uint8))
    (out / "b.png").write_bytes(b"keep me")
    one_line_error(inpaint(ckpt, imgs, mask, out), "1 result(s) exist already (b.png)")
    assert (out / "b.png").read_bytes() == b"keep me" and not (out / "a.png").exists()


def test_train_into_an_earlier_run_needs_resume_or_overwrite(tmp_path):
    run_dir, photos = tmp_path / "run", tmp_path / "photos"
    run_dir.mkdir(), photos.mkdir()
    (run_dir / "train_state.pt").write_bytes(b"step 4000")
    result = run("train", "--images", photos, "--output", run_dir, "--steps", "1")
    one_line_error(result, "holds an earlier run (train_state.pt); add --resume")
    assert (run_dir / "train_state.pt").read_bytes() == b"step 4000"
    one_line_error(run("train", "--images", photos, "--output", photos), "is the input folder")


def test_export_and_build_never_replace_their_inputs(ckpt, tmp_path):
    before = ckpt.read_bytes()
    one_line_error(run("export", "--ckpt", ckpt, "--output", ckpt), "is one of the inputs")
    assert ckpt.read_bytes() == before
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not really onnx")
    one_line_error(run("build", "--onnx", onnx, "--output", onnx), "is one of the inputs")
    assert onnx.read_bytes() == b"not really onnx"


def test_data_and_eval_outputs_are_checked(ckpt, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not touch")
    one_line_error(run("data", "--output", foreign),
                   "did not write (thesis.tex); choose a new or empty folder or add --overwrite")
    assert (foreign / "thesis.tex").read_text() == "do not touch"
    photos = tmp_path / "photos"
    photos.mkdir()
    imaging.write_png(photos / "p.png", random_pair(32, 32)[0])
    one_line_error(run("eval", "--ckpt", ckpt, "--images", photos, "--output", photos, "--size", "16"),
                   "is the input folder")


# ---- 2. silently wrong output -------------------------------------------------------------------------------------

def _known_pixels(ckpt, tmp_path, image_path, expected_rgb, mask=None):
    """Inpaint image_path with a centre hole; the known pixels must be exactly `expected_rgb`."""
    h, w = expected_rgb.shape[:2]
    hole = np.zeros((h, w), bool)
    hole[h // 4: h // 2, w // 4: w // 2] = True
    mask_path = tmp_path / "centre.png"
    imaging.write_png(mask_path, (hole * 255).astype(np.uint8))
    out = tmp_path / f"{image_path.stem}-out.png"
    result = inpaint(ckpt, image_path, mask or mask_path, out)
    assert result.exit_code == 0, result.output
    got = imaging.read_image(out)
    assert got.shape == expected_rgb.shape
    assert np.array_equal(got[~hole], expected_rgb[~hole])
    return got


def test_16_bit_grayscale_is_scaled_not_clipped(ckpt, tmp_path):
    values = (np.arange(16 * 32, dtype=np.uint32).reshape(16, 32) * 127).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    gray = ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    _known_pixels(ckpt, tmp_path, path, np.repeat(gray[..., None], 3, axis=2))


def test_float_tiff_in_0_1_is_scaled_and_out_of_range_is_refused(ckpt, tmp_path):
    values = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    path = tmp_path / "float.tif"
    Image.fromarray(values).save(path)
    gray = (values * 255 + 0.5).astype(np.uint8)
    _known_pixels(ckpt, tmp_path, path, np.repeat(gray[..., None], 3, axis=2))
    Image.fromarray(values * 1000).save(path)
    one_line_error(inpaint(ckpt, path, tmp_path / "centre.png", tmp_path / "x.png"),
                   "madf reads float images in [0, 1]")


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "PA-transparency", "RGBA", "CMYK", "I"])
def test_every_common_mode_keeps_its_known_pixels(ckpt, tmp_path, mode):
    rgb = random_pair(16, 16, seed=5)[0]
    base = Image.fromarray(rgb)
    if mode == "PA-transparency":
        img = base.convert("P")
        img.info["transparency"] = 0
        expected = np.asarray(img.convert("RGBA").convert("RGB"))
        path = tmp_path / "img.png"
        img.save(path, transparency=0)
    elif mode == "I":   # 32-bit integer TIFF holding 16-bit values
        values = (np.asarray(base.convert("L")).astype(np.int32) * 257)
        img = Image.fromarray(values, mode="I")
        expected = np.repeat(np.asarray(base.convert("L"))[..., None], 3, axis=2)
        path = tmp_path / "img.tif"
        img.save(path)
    else:
        img = base.convert(mode)
        path = tmp_path / ("img.tif" if mode == "CMYK" else "img.png")
        img.save(path)
        expected = np.asarray(Image.open(path).convert("RGB"))
    _known_pixels(ckpt, tmp_path, path, expected)


def test_exif_rotated_jpeg_is_processed_as_shown(ckpt, tmp_path):
    stored = random_pair(16, 32, seed=7)[0]   # 32 wide, 16 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6                          # rotate 90 degrees clockwise to display: 16 wide, 32 high
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=100)
    shown = np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270))
    hole = np.zeros((32, 16), bool)
    hole[8:16, 4:12] = True
    imaging.write_png(tmp_path / "hole.png", (hole * 255).astype(np.uint8))   # drawn on the picture as shown
    out = tmp_path / "out.png"
    assert inpaint(ckpt, path, tmp_path / "hole.png", out).exit_code == 0
    result = imaging.read_image(out)
    assert result.shape == (32, 16, 3)
    assert np.array_equal(result[~hole], shown[~hole])


def test_non_finite_weights_are_an_error_naming_the_file(tmp_path, pair):
    net = build_model(TINY, seed=0)
    with np.errstate(all="ignore"):
        net.att_conv_1.conv[0].weight.data[0, 0, 0, 0] = float("nan")
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(net, bad)
    image, mask = pair
    line = one_line_error(inpaint(bad, image, mask, tmp_path / "o.png"), "holds NaN or Inf")
    assert str(bad) in line and "att_conv_1.conv.0.weight" in line
    assert not (tmp_path / "o.png").exists()


def test_non_finite_onnx_weights_refused_by_onnxruntime_and_madf_build(ckpt, tmp_path, pair):
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    path = tmp_path / "m.onnx"
    export_onnx(load_checkpoint(ckpt), path)
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda i: len(i.raw_data))
    values = numpy_helper.to_array(init).copy()
    values.flat[0] = np.inf
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(path))
    image, mask = pair
    one_line_error(run("inpaint", "--model", path, "--image", image, "--mask", mask, "--output", tmp_path / "o.png"),
                   "holds NaN or Inf")
    one_line_error(run("build", "--onnx", path, "--output", tmp_path / "m.plan"), "holds NaN or Inf")
    assert not (tmp_path / "m.plan").exists()


def test_flipped_bytes_in_weights_are_found_on_load(ckpt, tmp_path, pair):
    """A bit flipped in storage leaves every weight finite: the SHA-256 recorded at write time finds it."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    from madf.common.errors import CheckpointError
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    flipped = tmp_path / "flipped.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-4] ^= 0x01                       # the lowest mantissa bit of the last float: still finite
    flipped.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the SHA-256 recorded"):
        load_checkpoint(flipped)
    path = tmp_path / "m.onnx"
    export_onnx(load_checkpoint(ckpt), path)
    model = onnx.load(str(path))
    init = max(model.graph.initializer, key=lambda i: len(i.raw_data))
    values = numpy_helper.to_array(init).copy()
    values.view(np.uint8).flat[0] ^= 0x01
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    onnx.save(model, str(path))
    image, mask = pair
    one_line_error(run("inpaint", "--model", path, "--image", image, "--mask", mask, "--output", tmp_path / "o.png"),
                   "do not match the SHA-256 madf-export recorded")
    assert not (tmp_path / "o.png").exists()


def test_special_files_are_never_replaced(ckpt, pair, tmp_path):
    """--overwrite onto a FIFO (or, as root, /dev/null) must not turn it into a regular file."""
    import stat

    from madf.common.atomic import atomic_path
    from madf.common.errors import OutputError
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    image, mask = pair
    one_line_error(inpaint(ckpt, image, mask, fifo, "--overwrite"), "is not a regular file")
    with pytest.raises(OutputError, match="not a regular file"):
        with atomic_path(fifo):
            pass
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_export_engine_checks_its_profile_and_triton_name_before_exporting(ckpt, tmp_path):
    out = tmp_path / "m.onnx"
    one_line_error(run("export", "--ckpt", ckpt, "--output", out, "--engine", tmp_path / "m.plan",
                       "--min", "1x100x100"), "H and W must be multiples of 16")
    one_line_error(run("export", "--ckpt", ckpt, "--output", out, "--triton-repo", tmp_path / "repo",
                       "--triton-name", "../x"), "--triton-name '../x'")
    one_line_error(run("export", "--ckpt", ckpt, "--output", out, "--triton-repo", tmp_path / "repo",
                       "--triton-name", "plugins"), "not plugins")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_non_finite_outputs_are_an_error(tiny_net):
    from madf.common.errors import ModelError
    from madf.inpaint.inpainter import Inpainter

    class Broken(BackendBase):
        multiple = 16

        def describe(self):
            return "a broken backend"

        def __call__(self, image, mask):
            return np.full(image.shape, np.nan, np.float32)
    image, hole = random_pair(16, 16)
    with pytest.raises(ModelError, match="a broken backend: output holds NaN or Inf"):
        Inpainter(Broken())(image, hole)


# ---- 3. one line, never a traceback --------------------------------------------------------------------------------

def _folder_run(tmp_path, sides):
    """imgs/ and masks/ (all hole) with one square image per {stem: side}."""
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    for stem, side in sides.items():
        imaging.write_png(imgs / f"{stem}.png", random_pair(side, side)[0])
        imaging.write_png(masks / f"{stem}.png", np.full((side, side), 255, np.uint8))
    return imgs, masks


def test_decompression_bomb_is_one_line_and_spares_the_folder(ckpt, tmp_path, monkeypatch):
    imgs, masks = _folder_run(tmp_path, {"small": 16, "huge": 64})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)   # 64x64 = 4096 > 2 x 1000: a "bomb"
    result = inpaint(ckpt, imgs, masks, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "huge.png: more than 0 megapixels, Pillow's decompression-bomb limit; resize it first" in result.output
    assert (tmp_path / "out" / "small.png").is_file()


def test_out_of_memory_is_one_line_and_spares_the_folder(ckpt, tmp_path, monkeypatch):
    from madf.inpaint.inpainter import TorchBackend
    imgs, masks = _folder_run(tmp_path, {"a": 16, "big": 32})
    real = TorchBackend.__call__

    def tight(self, image, mask):
        if image.shape[-1] > 16:
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(self, image, mask)
    monkeypatch.setattr(TorchBackend, "__call__", tight)
    result = inpaint(ckpt, imgs, masks, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert ("big.png: out of memory; try a smaller --batch-size, a smaller --max-side, another --device, a smaller "
            "image") in result.output
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "big.png").exists()


@pytest.mark.parametrize("device", ["mps", "xpu", "meta", "tpu", "cuda:x"])
def test_unsupported_devices_are_one_line(ckpt, pair, tmp_path, device):
    image, mask = pair
    one_line_error(inpaint(ckpt, image, mask, tmp_path / "o.png", "--device", device), f"device '{device}'")


def test_malformed_madf_metadata_is_one_line(ckpt, tmp_path, pair):
    onnx = pytest.importorskip("onnx")
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    path = tmp_path / "m.onnx"
    export_onnx(load_checkpoint(ckpt), path)
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "madf.multiple":
            prop.value = "sixteen"
    onnx.save(model, str(path))
    image, mask = pair
    one_line_error(run("inpaint", "--model", path, "--image", image, "--mask", mask, "--output", tmp_path / "o.png"),
                   "madf.multiple 'sixteen' is not a number")
    one_line_error(run("build", "--onnx", path, "--output", tmp_path / "m.plan"), "madf.multiple 'sixteen'")


@pytest.mark.parametrize("command, args, option", [
    ("bench", ["--size", "-64"], "--size"),
    ("bench", ["--width", "0"], "--width"),
    ("parity", ["--atol", "-1"], "--atol"),
    ("parity", ["--size", "-64"], "--size"),
    ("export", ["--width", "0"], "--width"),
    ("export", ["--check-size", "0"], "--check-size"),
    ("train", ["--images", ".", "--output", "x", "--width", "0"], "--width"),
    ("train", ["--images", ".", "--output", "x", "--size", "-64"], "--size"),
    ("train", ["--images", ".", "--output", "x", "--lr", "0"], "--lr"),
    ("eval", ["--images", ".", "--size", "0"], "--size"),
    ("bench", ["--warmup-s", "inf"], "--warmup-s"),
    ("serve", ["--batch-wait-ms", "inf"], "--batch-wait-ms"),
    ("serve", ["--batch-wait-ms", "nan"], "--batch-wait-ms"),
])
def test_out_of_range_numbers_are_usage_errors(ckpt, command, args, option):
    base = [] if command == "train" else ["--ckpt", ckpt]
    one_line_error(run(command, *base, *args), option, code=2)


@pytest.mark.parametrize("option, shape", [("--min", "0x0x0"), ("--max", "1x100000x100000"), ("--opt", "0x64x64"),
                                           ("--max", "5000x64x64")])
def test_absurd_profiles_are_usage_errors(tmp_path, option, shape):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"never read")
    one_line_error(run("build", "--onnx", onnx, option, shape), "N must be 1-1024 and H, W 1-16384", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_long_file_names_work_up_to_the_limit_and_are_refused_past_it(ckpt, pair, tmp_path):
    image, mask = pair
    longest = tmp_path / ("n" * 251 + ".png")   # 255 bytes: the temp name must not push it past the limit
    assert inpaint(ckpt, image, mask, longest).exit_code == 0 and longest.is_file()
    one_line_error(inpaint(ckpt, image, mask, tmp_path / ("n" * 300 + ".png")), "shorten it")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".madf-")]


def test_unwritable_outputs_fail_before_the_work(ckpt, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    # a --json under a file: refused before the benchmark runs (no backend is even opened)
    import madf.cli.backends as backends
    monkeypatch.setattr(backends, "open_file", lambda *a, **k: pytest.fail("the benchmark ran"))
    one_line_error(run("bench", "--ckpt", ckpt, "--json", blocker / "bench.json"), "is a file, not a folder")
    # and a folder without write permission (root ignores permissions, so ask os.access as the check does)
    import madf.common.paths as paths
    monkeypatch.setattr(paths, "_can_write", lambda folder: False)
    one_line_error(run("export", "--ckpt", ckpt, "--output", tmp_path / "m.onnx"), "no permission to write")
    assert not (tmp_path / "m.onnx").exists()


def test_write_errors_name_the_users_path_not_the_temp_file(tmp_path):
    from madf.common.atomic import atomic_path
    from madf.common.errors import OutputError
    target = tmp_path / "out.png"
    target.mkdir()
    (target / "x").touch()   # the final rename fails, naming the hidden temp file in the OS error
    with pytest.raises(OutputError, match=f"cannot write {target}") as info:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"result")
    assert ".madf-" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_interrupted_write_leaves_no_temp_file(tmp_path):
    """SIGTERM in the middle of an atomic write: the tool exits, the temp file is gone, the target not made."""
    script = textwrap.dedent(f"""
        import os, signal, time
        from pathlib import Path
        from madf.common.atomic import atomic_path
        from madf.cli._common import cli_errors
        with cli_errors():
            with atomic_path(Path({str(tmp_path / 'result.png')!r})) as tmp:
                tmp.write_bytes(b"half")
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(30)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unforeseen_errors_are_one_line(ckpt, pair, tmp_path, monkeypatch):
    import madf.inpaint.inpainter
    monkeypatch.setattr(madf.inpaint.inpainter.Inpainter, "inpaint_many", lambda *a, **k: 1 / 0)
    image, mask = pair
    one_line_error(inpaint(ckpt, image, mask, tmp_path / "o.png"), "ZeroDivisionError")


def test_eval_skips_an_unreadable_photo(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        imaging.write_png(photos / f"p{i}.png", random_pair(40, 48, seed=i)[0])
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    result = run("eval", "--ckpt", ckpt, "--images", photos, "--output", tmp_path / "eval", "--size", "32",
                 "--no-baselines", "--per-bucket", "1")
    assert result.exit_code == 0, result.output
    assert "broken.png: unreadable" in result.output and "(1 unreadable skipped)" in result.output
    assert (tmp_path / "eval" / "eval.json").is_file()


# ---- messages that name the right fix --------------------------------------------------------------------------

def test_model_files_given_to_the_wrong_option_say_which_one(ckpt, pair, tmp_path):
    pytest.importorskip("onnxruntime")
    from madf.export.onnx import export_onnx
    from madf.model.checkpoint import load_checkpoint
    onnx_file = tmp_path / "m.onnx"
    export_onnx(load_checkpoint(ckpt), onnx_file)
    image, mask = pair
    folder = tmp_path / "models"
    folder.mkdir()
    one_line_error(run("inpaint", "--model", folder, "--image", image, "--mask", mask, "--output", tmp_path / "o.png"),
                   "is a folder; give an ONNX file in it")
    one_line_error(run("inpaint", "--engine", onnx_file, "--image", image, "--mask", mask, "--output",
                       tmp_path / "o.png"), "is an ONNX file, not a TensorRT engine: pass it as --model")
    one_line_error(run("eval", "--engine", onnx_file, "--images", image.parent, "--size", "16", "--output",
                       tmp_path / "eval"), "pass it as --model")
    one_line_error(run("inpaint", "--model", ckpt, "--image", image, "--mask", mask, "--output", tmp_path / "o.png"),
                   "is a checkpoint, not an ONNX file: pass it as --ckpt")


def test_an_opset_the_exporter_does_not_write_is_refused(ckpt, tmp_path, monkeypatch):
    """--opset 99 was recorded in the metadata while the file was opset 18; then refused, but after the export and
    onnxscript's traceback: now before anything is exported."""
    import madf.export.onnx as exporter
    monkeypatch.setattr(exporter, "prepare", lambda *a, **k: pytest.fail("exported before the opset was checked"))
    one_line_error(run("export", "--ckpt", ckpt, "--output", tmp_path / "m.onnx", "--opset", "99"),
                   "--opset 99: choose 17-")
    assert not (tmp_path / "m.onnx").exists()


def test_a_full_disk_names_the_file(ckpt, tmp_path, monkeypatch):
    """No space left while writing --json after the benchmark: one line naming the file, not a traceback (and
    every atomic write says the same)."""
    import errno
    from pathlib import Path

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Path, "write_text", full)
    line = one_line_error(run("bench", "--ckpt", ckpt, "--size", "16", "--runs", "2", "--warmup-runs", "0",
                              "--warmup-s", "0", "--json", tmp_path / "bench.json"), "No space left on device")
    assert f"cannot write {tmp_path / 'bench.json'}" in line
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_names_only_the_options_a_tool_has(ckpt, tmp_path, monkeypatch):
    import madf.export.onnx as exporter

    def no_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(exporter, "export_onnx", no_memory)
    line = one_line_error(run("export", "--ckpt", ckpt, "--output", tmp_path / "m.onnx"), "out of memory")
    assert "--batch-size" not in line and "--device" not in line and "--max-side" not in line, line


def test_errors_of_a_folder_run_are_whole_lines_after_the_bar(ckpt, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ("a", "b"):
        rgb, hole = random_pair(16, 24, seed=len(stem))
        imaging.write_png(images / f"{stem}.png", rgb)
        imaging.write_png(masks / f"{stem}.png", (hole * 255).astype(np.uint8))
    (images / "c.png").write_bytes(b"not a png")
    imaging.write_png(masks / "c.png", np.zeros((16, 24), np.uint8))
    result = run("inpaint", "--ckpt", ckpt, "--image", images, "--mask", masks, "--output", tmp_path / "out")
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any(line.startswith("Error: image ") and "c.png: unreadable" in line for line in lines), lines
    assert any(line.startswith("Error: 1 of 3 image(s) failed") for line in lines), lines


def test_onnxruntime_out_of_memory_is_madfs_line_not_the_arenas(exported, tmp_path, monkeypatch):
    """ONNX Runtime's arena failing on a uint8 file (its real text below, measured under a 3 GB limit) and any
    other ONNX Runtime failure: one line of madf's, in the plain run and in a folder run's rows alike."""
    pytest.importorskip("onnxruntime")
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from madf.export.uint8_io import convert_file
    u8 = tmp_path / "u8.onnx"
    convert_file(exported[1]["native"], u8)
    photos, masks = tmp_path / "photos", tmp_path / "masks"
    for folder in (photos, masks):
        folder.mkdir()
    for i in range(2):
        image, hole = random_pair(16, 24, seed=i)
        imaging.write_png(photos / f"p{i}.png", image)
        imaging.write_png(masks / f"p{i}.png", (hole * 255).astype(np.uint8))
    arena = ("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running ConvTranspose node. "
             "Status Message: bfc_arena.cc:360 void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, "
             "onnxruntime::Stream*) Failed to allocate memory for requested buffer of size 579076096")

    def no_memory(self, *args, **kwargs):
        raise Fail(arena)
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", no_memory)
    line = one_line_error(run("inpaint", "--model", u8, "--image", photos / "p0.png", "--mask", masks / "p0.png",
                              "--output", tmp_path / "o.png"), "out of memory; try")
    assert "BFCArena" not in line and "--batch-size" in line
    folder = run("inpaint", "--model", u8, "--image", photos, "--mask", masks, "--output", tmp_path / "out")
    assert folder.exit_code == 1 and "BFCArena" not in folder.output and "Traceback" not in folder.output
    assert folder.output.count("out of memory; try") == 2, folder.output
    from madf.inpaint.inpainter import Inpainter
    from madf.inpaint.jobs import Job, run_chunk  # a library caller (a Ray actor): the same line, no click
    from madf.runtime.onnxruntime import OnnxRuntimeBackend
    outcome = next(iter(run_chunk(Inpainter(OnnxRuntimeBackend(u8)),
                                  [Job(photos / "p0.png", masks / "p0.png", tmp_path / "lib.png")])))
    assert outcome.status == "failed" and "out of memory; try" in outcome.error and "BFCArena" not in outcome.error

    def other(self, *args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : something else\nsecond line")
    monkeypatch.setattr(onnxruntime.InferenceSession, "run", other)
    one_line_error(run("inpaint", "--model", u8, "--image", photos / "p0.png", "--mask", masks / "p0.png",
                       "--output", tmp_path / "o.png"), "u8.onnx: ONNX Runtime could not run it")
