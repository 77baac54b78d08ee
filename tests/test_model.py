import pytest
import torch

from madf.model.config import OFFICIAL, ModelConfig
from madf.model.network import MADFNet, build_model, count_parameters
from madf.model.pipeline import InpaintModel

from conftest import TINY
from official_reference import official_forward, official_inpaint


def _official_keys():
    """The official state dict's names and shapes (../shared/spec/official-madf.md), dead encoder BN excluded."""
    keys = {}
    enc = [(6, 16, 7), (16, 32, 5), (32, 64, 3), (64, 128, 3), (128, 128, 3), (128, 128, 3), (128, 128, 3)]
    skip = [64, 128, 256, 512, 512, 512, 512]
    for l, (cin, cout, k) in enumerate(enc, 1):
        keys[f"filter_gen_{l}.conv.0.weight"] = (16, 3 if l == 1 else 16, k, k)
        keys[f"filter_gen_{l}.conv.0.bias"] = (16,)
        keys[f"filter_gen_{l}.conv1.0.weight"] = (cin * k * k * cout, 16, 1, 1)
        keys[f"filter_gen_{l}.conv1.0.bias"] = (cin * k * k * cout,)
        keys[f"enc_up_{l}.0.weight"] = (skip[l - 1], cout, 1, 1)
        keys[f"enc_up_{l}.0.bias"] = (skip[l - 1],)
    for l in range(7, 1, -1):
        cin, cout = skip[l - 1], skip[l - 2]
        keys[f"deconv_{l}.0.weight"], keys[f"deconv_{l}.0.bias"] = (cin, cout, 4, 4), (cout,)
        for s in ("weight", "bias", "running_mean", "running_var"):
            keys[f"deconv_{l}.1.{s}"] = (cout,)
        keys[f"deconv_{l}.1.num_batches_tracked"] = ()
        keys[f"att_conv_{l}.conv.0.weight"], keys[f"att_conv_{l}.conv.0.bias"] = (cout, 2 * cout, 3, 3), (cout,)
        for r in (0, 1):
            p = f"dec_ref{r}_{l}"
            keys[f"{p}.deconv.weight"], keys[f"{p}.deconv.bias"] = (cin, cout, 4, 4), (cout,)
            keys[f"{p}.bn.batch_norm.running_mean"] = keys[f"{p}.bn.batch_norm.running_var"] = (cout,)
            keys[f"{p}.bn.batch_norm.num_batches_tracked"] = ()
            keys[f"{p}.bn.mlp_shared.0.weight"], keys[f"{p}.bn.mlp_shared.0.bias"] = (128, cout, 3, 3), (128,)
            for b in ("mlp_scale", "mlp_bias"):
                keys[f"{p}.bn.{b}.weight"], keys[f"{p}.bn.{b}.bias"] = (cout, 128, 3, 3), (cout,)
    keys["deconv_1.0.weight"], keys["deconv_1.0.bias"] = (64, 3, 4, 4), (3,)
    keys["att_conv_1.conv.0.weight"], keys["att_conv_1.conv.0.bias"] = (3, 9, 3, 3), (3,)
    keys["dec_ref0_1.weight"], keys["dec_ref0_1.bias"] = (3, 73, 1, 1), (3,)
    keys["dec_ref1_1.weight"], keys["dec_ref1_1.bias"] = (3, 76, 1, 1), (3,)
    return keys


def test_official_config_has_official_names_shapes_and_size():
    with torch.device("meta"):
        net = MADFNet(OFFICIAL)
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == _official_keys()
    # 271 official entries minus the 35 of the never-applied encoder BatchNorms; their 1,248 parameters likewise.
    assert len(got) == 271 - 35
    assert count_parameters(net) == 85_141_214 - 2 * (16 + 32 + 64 + 4 * 128)


@pytest.mark.parametrize("config", [TINY, ModelConfig(levels=3, width=0.25, refinement_decoders=0),
                                    ModelConfig(levels=5, width=0.125, refinement_decoders=1)],
                         ids=lambda c: c.describe())
def test_outputs_per_config(config):
    net = build_model(config, seed=0)
    size = 2 * config.multiple
    with torch.no_grad():
        outs = net(torch.randn(2, 3, size, size), torch.ones(2, 3, size, size))
    assert len(outs) == config.refinement_decoders + 1
    assert all(o.shape == (2, 3, size, size) and torch.isfinite(o).all() for o in outs)


def test_whole_model_rewrite_equals_unfold():
    net = build_model(TINY, seed=0).double()
    x = torch.randn(2, 3, 32, 48, dtype=torch.float64)
    mask = (torch.rand(2, 1, 32, 48) > 0.4).double().expand(-1, 3, -1, -1)
    with torch.no_grad():
        net.dynamic_filter = "unfold"
        ref = net(x * mask, mask)
        net.dynamic_filter = "rewrite"
        out = net(x * mask, mask)
    for r, o in zip(ref, out):
        err = (r - o).abs().max().item()
        print(f"whole model, float64: max abs {err:.2e}")
        assert err < 1e-10


@pytest.mark.parametrize("impl", ["unfold", "rewrite"])
def test_matches_independent_official_reference(impl):
    net = build_model(TINY, seed=3, dynamic_filter=impl).double()
    sd = net.state_dict()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    mask = (torch.rand(1, 1, 32, 32) > 0.3).double().expand(-1, 3, -1, -1)
    with torch.no_grad():
        ours, ref = net(x * mask, mask), official_forward(sd, x * mask, mask)
    for o, r in zip(ours, ref):
        assert (o - r).abs().max().item() < 1e-10


def test_rewrite_cache_follows_weight_updates(tiny_net):
    x, mask = torch.randn(1, 3, 16, 16), torch.ones(1, 3, 16, 16)
    with torch.no_grad():
        before = tiny_net(x, mask)[-1]
        tiny_net.filter_gen_2.conv1[0].weight.mul_(3.0)      # in-place update bumps the tensor version
        after = tiny_net(x, mask)[-1]
        tiny_net.dynamic_filter = "unfold"
        expected = tiny_net(x, mask)[-1]
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, atol=1e-5)


def test_training_mode_gradients_flow_through_rewrite(tiny_net):
    tiny_net.train()
    out = tiny_net(torch.randn(2, 3, 16, 16), torch.ones(2, 3, 16, 16))[-1]
    out.square().mean().backward()
    grad = tiny_net.filter_gen_3.conv1[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_input_size_must_be_a_multiple(tiny_net):
    with pytest.raises(ValueError, match="not a multiple of 16"):
        tiny_net(torch.zeros(1, 3, 24, 16), torch.ones(1, 3, 24, 16))


def test_inpaint_model_contract_matches_official_test_path(tiny_net):
    """Our contract module vs the official test.py (normalize, forward, composite in normalized space)."""
    net = tiny_net.double()
    image = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    hole = (torch.rand(2, 1, 32, 32) > 0.6).double()
    with torch.no_grad():
        ours = InpaintModel(net).double()(image, hole)
        ref = official_inpaint(net.state_dict(), image, (1 - hole).expand(-1, 3, -1, -1))
    assert (ours - ref).abs().max().item() < 1e-12
    known = (hole == 0).expand(-1, 3, -1, -1)
    assert torch.equal(ours[known], image[known])     # bit-exact pass-through


@pytest.mark.slow
def test_full_official_model_matches_reference_at_128():
    """The full-size official network (85M random parameters) at 128x128, float32, both implementations."""
    net = build_model(OFFICIAL, seed=0)
    image = torch.rand(1, 3, 128, 128)
    hole = torch.zeros(1, 1, 128, 128)
    hole[..., 30:90, 40:100] = 1
    with torch.no_grad():
        ref = official_inpaint(net.state_dict(), image, (1 - hole).expand(-1, 3, -1, -1))
        for impl in ("rewrite", "unfold"):
            net.dynamic_filter = impl
            out = InpaintModel(net)(image, hole)
            err = (out - ref).abs()
            print(f"official config, {impl}: max abs {err.max():.2e}, mean abs {err.mean():.2e}")
            assert err.max().item() < 1e-4


def _pair(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    known = (torch.rand(1, 1, size, size, generator=g) > 0.3).float().expand(-1, 3, -1, -1)
    return torch.randn(1, 3, size, size, generator=g) * known, known


def test_models_made_or_run_inside_inference_mode(tmp_path):
    # Servers wrap everything in torch.inference_mode: loading, .to(...), .half() and calls inside it, or loading
    # outside and calling inside, must all give the eager answer (inference tensors have no version counter).
    from madf.model.checkpoint import load_checkpoint, save_checkpoint
    path = tmp_path / "tiny.safetensors"
    save_checkpoint(build_model(TINY, seed=0), path)
    x, k = _pair()
    outside = load_checkpoint(path)
    with torch.no_grad():
        ref = outside(x, k)[-1]
    with torch.inference_mode():
        inside = load_checkpoint(path)
        cases = {"loaded inside": inside(x, k)[-1], "loaded outside": outside(x, k)[-1],
                 "float64 inside": inside.to(torch.float64)(x.double(), k.double())[-1].float(),
                 "bfloat16 inside": load_checkpoint(path).to(torch.bfloat16)(x.bfloat16(), k.bfloat16())[-1].float()}
        half = load_checkpoint(path).half()   # CPU half convolutions may not exist in every torch build
        try:
            cases["half inside"] = half(x.half(), k.half())[-1].float()
        except RuntimeError as exc:
            assert "not implemented" in str(exc), exc
    for name, out in cases.items():
        err = (out - ref).abs().max().item()
        print(f"{name}: max abs {err:.2e} vs the eager model")
        assert err < (5e-2 if ("16" in name or "half" in name) else 1e-5), name


def test_inference_mode_weight_changes_are_seen_and_training_works_after(tmp_path):
    x, k = _pair(1)
    with torch.inference_mode():
        net = build_model(TINY, seed=0)
        before = net(x, k)[-1]
        net.load_state_dict(build_model(TINY, seed=3).state_dict())   # in place, no version counter to bump
        after = net(x, k)[-1]
    expected = build_model(TINY, seed=3)
    with torch.no_grad():
        ref = expected(x, k)[-1]
    assert (before - after).abs().max() > 1e-3
    assert (after - ref).abs().max() < 1e-5
    # a model that served inside inference_mode is then usable by autograd outside it: the weight it cached there
    # is an inference tensor, which a backward pass may not save
    served = build_model(TINY, seed=0)
    served.load_state_dict(expected.state_dict())   # new weight versions: the first call below derives the weight
    with torch.inference_mode():
        served(x, k)
    for p in served.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    served(xg, k)[-1].sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()
