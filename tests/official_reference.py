"""An independent, functional statement of the official MADF forward, written from ../shared/spec/official-madf.md.

It reads an official-named state dict directly (no madf modules) and computes the dynamic filter its own way
(einsum over unfolded windows), so the package's MADFNet is checked against something it does not share code with.
"""
import torch
import torch.nn.functional as F

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _kp(level):
    return {1: (7, 3), 2: (5, 2)}.get(level, (3, 1))


def _conv(sd, name, x, stride=1, padding=0):
    return F.conv2d(x, sd[name + ".weight"], sd[name + ".bias"], stride, padding)


def _bn(sd, name, x):
    return F.batch_norm(x, sd[name + ".running_mean"], sd[name + ".running_var"], sd.get(name + ".weight"),
                        sd.get(name + ".bias"), False, 0.0, 1e-5)


def _deconv(sd, name, x):
    return F.conv_transpose2d(x, sd[name + ".weight"], sd[name + ".bias"], stride=2, padding=1)


def official_forward(sd, image, mask):
    """image: normalized RGB times mask; mask: (N,3,H,W), 1 = known. Returns the list of K+1 outputs."""
    levels = max(int(k.split(".")[0].split("_")[-1]) for k in sd if k.startswith("filter_gen_"))
    refinements = sum(1 for k in range(4) if f"dec_ref{k}_1.weight" in sd)
    h = [torch.cat([image, mask], 1)]
    e, m = h[0], mask
    for l in range(1, levels + 1):
        k, p = _kp(l)
        m = F.relu(_conv(sd, f"filter_gen_{l}.conv.0", m, 2, p))
        theta = _conv(sd, f"filter_gen_{l}.conv1.0", m)                 # (N, D, Ho, Wo), d = j * Cout + o
        n, d, ho, wo = theta.shape
        cols = F.unfold(e, k, padding=p, stride=2)                      # (N, J, Ho*Wo)
        theta = theta.reshape(n, cols.shape[1], d // cols.shape[1], ho * wo)
        e = F.relu(torch.einsum("njp,njop->nop", cols, theta).reshape(n, -1, ho, wo))
        h.append(F.relu(_conv(sd, f"enc_up_{l}.0", e)))

    def pn(prefix, x, guide):
        shared = F.relu(_conv(sd, f"{prefix}.bn.mlp_shared.0", guide, padding=1))
        x = _bn(sd, f"{prefix}.bn.batch_norm", x)
        return x * (1 + _conv(sd, f"{prefix}.bn.mlp_scale", shared, padding=1)) + \
            _conv(sd, f"{prefix}.bn.mlp_bias", shared, padding=1)

    att = second = third = h[levels]
    outputs = []
    for i in range(levels, 0, -1):
        dconv = _deconv(sd, f"deconv_{i}.0", att)
        if i != 1:
            dconv = F.leaky_relu(_bn(sd, f"deconv_{i}.1", dconv), 0.2)
        att = _conv(sd, f"att_conv_{i}.conv.0", torch.cat([h[i - 1], dconv], 1), padding=1)
        if i != 1:
            att = F.relu(att)
            if refinements > 0:
                second = F.leaky_relu(pn(f"dec_ref0_{i}", _deconv(sd, f"dec_ref0_{i}.deconv", second), att), 0.2)
            if refinements > 1:
                third = F.leaky_relu(pn(f"dec_ref1_{i}", _deconv(sd, f"dec_ref1_{i}.deconv", third), second), 0.2)
        else:
            outputs.append(att)
            if refinements > 0:
                up = F.interpolate(second, scale_factor=2, mode="bilinear")
                second = _conv(sd, "dec_ref0_1", torch.cat([up, att, h[0]], 1))
                outputs.append(second)
            if refinements > 1:
                up = F.interpolate(third, scale_factor=2, mode="bilinear")
                third = _conv(sd, "dec_ref1_1", torch.cat([up, att, second, h[0]], 1))
                outputs.append(third)
    return outputs


def official_inpaint(sd, image01, known3):
    """The official test.py path: normalize, mask, forward, composite in normalized space, unnormalize, clamp."""
    dtype = image01.dtype
    mean, std = MEAN.to(dtype), STD.to(dtype)
    norm = (image01 - mean) / std
    out = official_forward(sd, norm * known3, known3)[-1]
    comp = known3 * norm + (1 - known3) * out
    return (comp * std + mean).clamp(0, 1)
