import numpy as np
import pytest
from click.testing import CliRunner

from madf.cli.inpaint import main as inpaint_main
from madf.inpaint import imaging
from madf.model.checkpoint import save_checkpoint

from conftest import random_pair, write_official_checkpoint


@pytest.fixture
def ckpt(tiny_net, tmp_path):
    return save_checkpoint(tiny_net, tmp_path / "tiny.safetensors") or tmp_path / "tiny.safetensors"


def _write_pair(folder, stem, h, w, seed, mask_folder=None):
    image, hole = random_pair(h, w, seed=seed)
    imaging.write_png(folder / f"{stem}.png", image)
    imaging.write_png((mask_folder or folder) / f"{stem}.png", (hole * 255).astype(np.uint8))
    return image, hole


def _run(*args):
    return CliRunner().invoke(inpaint_main, [str(a) for a in args] + ["--quiet"])


def test_single_file(ckpt, tmp_path):
    (tmp_path / "m").mkdir()
    image, hole = _write_pair(tmp_path, "photo", 23, 31, 0, mask_folder=tmp_path / "m")
    result = _run("--ckpt", ckpt, "--image", tmp_path / "photo.png", "--mask", tmp_path / "m/photo.png",
                  "--output", tmp_path / "out/filled.png")
    assert result.exit_code == 0, result.output
    out = imaging.read_image(tmp_path / "out/filled.png")
    assert out.shape == image.shape and np.array_equal(out[~hole], image[~hole])


def test_official_checkpoint_through_the_cli(tiny_net, tmp_path):
    ckpt = write_official_checkpoint(tiny_net, tmp_path / "official.pth")
    (tmp_path / "m").mkdir()
    _write_pair(tmp_path, "a", 16, 16, 0, mask_folder=tmp_path / "m")
    result = _run("--ckpt", ckpt, "--image", tmp_path / "a.png", "--mask", tmp_path / "m/a.png",
                  "--output", tmp_path / "o", "--dynamic-filter", "unfold")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o/a.png").is_file()


def test_dynamic_filter_choice_on_the_cpu(ckpt, tmp_path):
    # auto runs the rewrite where no fused kernel can run (same pixels); fused alone needs a GPU: one line saying so
    (tmp_path / "m").mkdir()
    _write_pair(tmp_path, "a", 16, 16, 0, mask_folder=tmp_path / "m")
    args = ["--ckpt", ckpt, "--image", tmp_path / "a.png", "--mask", tmp_path / "m/a.png"]
    for impl in ("rewrite", "auto"):
        assert _run(*args, "--output", tmp_path / f"{impl}.png", "--dynamic-filter", impl).exit_code == 0
    assert np.array_equal(imaging.read_image(tmp_path / "auto.png"), imaging.read_image(tmp_path / "rewrite.png"))
    result = _run(*args, "--output", tmp_path / "fused.png", "--dynamic-filter", "fused")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: --dynamic-filter fused runs the CUDA kernel: add --device cuda (auto uses the rewrite on the CPU)"]
    assert not (tmp_path / "fused.png").exists()


@pytest.mark.slow
def test_full_size_official_checkpoint_equals_the_official_network(tmp_path):
    """The done-when of the model issue: an official-format file of the full network through madf-inpaint at a
    multiple of 128 gives the official test path's output (8-bit, so within one level of rounding)."""
    import torch

    from madf.model.config import OFFICIAL
    from madf.model.network import build_model

    from official_reference import official_inpaint

    net = build_model(OFFICIAL, seed=0)
    ckpt = write_official_checkpoint(net, tmp_path / "official.pth", optimizer_state=False)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    del net
    image, hole = random_pair(128, 256, seed=4, hole_fraction=0.2)
    imaging.write_png(tmp_path / "img.png", image)
    imaging.write_png(tmp_path / "mask.png", (hole * 255).astype(np.uint8))
    # the network alone: the whole frame, no border matching (the pipeline's own step after the network)
    result = _run("--ckpt", ckpt, "--image", tmp_path / "img.png", "--mask", tmp_path / "mask.png",
                  "--output", tmp_path / "out.png", "--strategy", "full", "--no-match-border")
    assert result.exit_code == 0, result.output
    out = imaging.read_image(tmp_path / "out.png").astype(int)
    img_t, mask_t = imaging.to_contract(image, hole, 128)
    with torch.no_grad():
        ref = official_inpaint(sd, torch.from_numpy(img_t), 1 - torch.from_numpy(mask_t).expand(-1, 3, -1, -1))
    ref8 = imaging.to_uint8(ref[0].numpy().transpose(1, 2, 0)).astype(int)
    diff = np.abs(out - ref8)
    print(f"official 128x256 through madf-inpaint vs official path: max {diff.max()} levels, "
          f"{(diff > 0).mean():.4%} of values differ")
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    assert np.array_equal(out[~hole], image[~hole])


def test_folder_with_masks_matched_by_stem(ckpt, tmp_path):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    pairs = {s: _write_pair(imgs, s, 16 + 3 * i, 20, i, mask_folder=masks) for i, s in enumerate("abc")}
    result = _run("--ckpt", ckpt, "--image", imgs, "--mask", masks, "--output", tmp_path / "out", "--batch-size", 2)
    assert result.exit_code == 0, result.output
    for stem, (image, hole) in pairs.items():
        out = imaging.read_image(tmp_path / "out" / f"{stem}.png")
        assert np.array_equal(out[~hole], image[~hole])


def test_one_mask_for_every_image_and_invert(ckpt, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        imaging.write_png(imgs / f"{i}.png", random_pair(16, 16, seed=i)[0])
    hole = random_pair(16, 16, seed=7)[1]
    imaging.write_png(tmp_path / "white_hole.png", (hole * 255).astype(np.uint8))
    imaging.write_png(tmp_path / "white_known.png", ((~hole) * 255).astype(np.uint8))
    assert _run("--ckpt", ckpt, "--image", imgs, "--mask", tmp_path / "white_hole.png",
                "--output", tmp_path / "a").exit_code == 0
    assert _run("--ckpt", ckpt, "--image", imgs, "--mask", tmp_path / "white_known.png", "--invert-mask",
                "--output", tmp_path / "b").exit_code == 0
    for i in range(2):
        assert np.array_equal(imaging.read_image(tmp_path / f"a/{i}.png"), imaging.read_image(tmp_path / f"b/{i}.png"))


def test_size_mismatch_is_one_line_and_writes_nothing(ckpt, tmp_path):
    imaging.write_png(tmp_path / "img.png", random_pair(16, 16)[0])
    imaging.write_png(tmp_path / "mask.png", np.zeros((16, 17), np.uint8))
    result = _run("--ckpt", ckpt, "--image", tmp_path / "img.png", "--mask", tmp_path / "mask.png",
                  "--output", tmp_path / "out.png")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: img.png: image is 16x16 but its mask is 17x16 (WxH); give a mask of the image's size"]
    assert not (tmp_path / "out.png").exists()


def test_a_bad_file_in_a_folder_spares_the_rest(ckpt, tmp_path):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    _write_pair(imgs, "good", 16, 16, 0, mask_folder=masks)
    _write_pair(imgs, "bad", 16, 16, 1, mask_folder=masks)
    (imgs / "bad.png").write_bytes(b"\x89PNG broken")
    result = _run("--ckpt", ckpt, "--image", imgs, "--mask", masks, "--output", tmp_path / "out")
    assert result.exit_code == 1
    assert "bad.png: unreadable" in result.output and "1 of 2 image(s) failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png"]


@pytest.mark.parametrize("problem, match", [
    ("corrupt_ckpt", "cannot be read by torch.load"),
    ("unmatched_mask", "no mask in"),
    ("missing_image", "no such file or folder"),
    ("gif_output", "write results as .png, .jpg"),
])
def test_errors_before_any_work(ckpt, tmp_path, problem, match):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir(), masks.mkdir()
    _write_pair(imgs, "a", 16, 16, 0, mask_folder=masks)
    args = {"ckpt": ckpt, "image": imgs, "mask": masks, "output": tmp_path / "out"}
    if problem == "corrupt_ckpt":
        args["ckpt"] = tmp_path / "x.pth"
        args["ckpt"].write_bytes(b"PK\x03\x04 truncated zip")
    elif problem == "unmatched_mask":
        (masks / "a.png").rename(masks / "z.png")
    elif problem == "missing_image":
        args["image"] = tmp_path / "nope"
    else:
        args["image"], args["mask"], args["output"] = imgs / "a.png", masks / "a.png", tmp_path / "o.gif"
    result = _run(*sum(([f"--{k}", v] for k, v in args.items()), []))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.output
    assert not (tmp_path / "out").exists()
