import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from madf.common.errors import InputError
from madf.inpaint import imaging


def test_mask_polarity_threshold_and_invert():
    arr = np.array([[0, 127, 128, 255]], np.uint8)
    assert imaging.to_hole_mask(arr).tolist() == [[False, False, True, True]]
    assert imaging.to_hole_mask(arr, invert=True).tolist() == [[True, True, False, False]]
    assert imaging.to_hole_mask(Image.fromarray(arr)).tolist() == [[False, False, True, True]]
    rgb = Image.fromarray(np.repeat(arr[..., None], 3, axis=2))
    assert imaging.to_hole_mask(rgb).tolist() == [[False, False, True, True]]


def test_rgba_mask_uses_alpha_strokes():
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[..., 3] = [0, 255, 0]           # a stroke painted on transparency
    assert imaging.to_hole_mask(Image.fromarray(rgba, "RGBA")).tolist() == [[False, True, False]]


def test_bad_arrays_are_rejected():
    with pytest.raises(InputError, match="bool or uint8"):
        imaging.to_hole_mask(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="must be uint8"):
        imaging.to_rgb_array(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"image is 5x4 but its mask is 4x5"):
        imaging.check_pair(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), bool))


def test_image_conversions():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert imaging.to_rgb_array(gray).shape == (3, 4, 3)
    rgba = np.zeros((3, 4, 4), np.uint8)
    assert imaging.to_rgb_array(Image.fromarray(rgba, "RGBA")).shape == (3, 4, 3)


@pytest.mark.parametrize("h, w", [(1, 1), (5, 17), (16, 16), (130, 3)])
def test_pad_reflects_and_crops_back(h, w):
    arr = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    padded = imaging.pad_to_multiple(arr, 16)
    assert padded.shape[:2] == imaging.padded_size(h, w, 16)
    assert padded.shape[0] % 16 == 0 and padded.shape[1] % 16 == 0
    assert np.array_equal(padded[:h, :w], arr)
    if w > 1 and padded.shape[1] > w:
        assert np.array_equal(padded[:h, w], arr[:, w - 2])      # reflect: the column before the edge


def test_to_contract_and_compare():
    image = np.full((5, 7, 3), 255, np.uint8)
    hole = np.zeros((5, 7), bool)
    hole[2, 3] = True
    img_t, mask_t = imaging.to_contract(image, hole, 8)
    assert img_t.shape == (1, 3, 8, 8) and img_t.dtype == np.float32 and img_t.max() == 1.0
    assert mask_t.shape == (1, 1, 8, 8) and mask_t[0, 0, 2, 3] == 1 and mask_t[0, 0, :5, :7].sum() == 1
    assert mask_t[0, 0, 6, 3] == 1                      # the padding reflects the hole with the image
    stats = imaging.compare(np.zeros(4), np.array([0, 0, 0, 0.1]))
    assert stats["max_abs"] == pytest.approx(0.1) and stats["mean_abs"] == pytest.approx(0.025)
    assert stats["psnr"] == pytest.approx(10 * np.log10(1 / 0.0025))
    assert imaging.compare(np.ones(3), np.ones(3))["psnr"] == float("inf")


def test_write_png_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    imaging.write_png(target, np.zeros((4, 4, 3), np.uint8))
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        imaging.write_png(target, np.ones((4, 4, 3), np.uint8))
    assert target.read_bytes() == before                      # the previous file survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]   # no temp file left
    assert oct(os.stat(target).st_mode & 0o777) != oct(0o600)


def test_unreadable_image_is_one_line(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"bad.png: unreadable") as err:
        imaging.read_image(tmp_path / "bad.png")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="no such file"):
        imaging.read_mask(tmp_path / "missing.png")


def test_imaging_does_not_import_torch():
    code = ("import madf.inpaint.imaging, madf.inpaint.inpainter, madf.inpaint.strategy, madf.common.errors, sys; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_white_on_black_rgba_mask_with_a_transparent_pixel_is_read_by_luminance():
    """One transparent pixel used to make the alpha rule apply: the whole opaque image became a hole."""
    white = np.zeros((20, 30), np.uint8)
    white[5:10, 8:20] = 255
    rgba = np.dstack([white, white, white, np.full_like(white, 255)])
    rgba[0, 0, 3] = 0
    hole = imaging.to_hole_mask(Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(hole, white >= 128)


def test_a_stroke_drawn_on_transparency_is_read_by_its_alpha():
    """A red stroke (luminance 76, under the threshold) painted on a transparent layer: the stroke is the hole."""
    alpha = np.zeros((20, 30), np.uint8)
    alpha[4:12, 3:25] = 255
    rgba = np.dstack([np.full_like(alpha, 255), np.zeros_like(alpha), np.zeros_like(alpha), alpha])
    assert np.array_equal(imaging.to_hole_mask(Image.fromarray(rgba, "RGBA")), alpha >= 128)
