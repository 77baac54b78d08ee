import re

import pytest
import torch

from madf.common.errors import CheckpointError
from madf.model.checkpoint import infer_config, load_checkpoint, read_checkpoint, save_checkpoint
from madf.model.config import OFFICIAL, ModelConfig
from madf.model.network import build_model

from conftest import TINY, write_official_checkpoint
from official_reference import official_forward


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_official_file_loads_and_infers_config(tiny_net, tmp_path, caplog):
    path = write_official_checkpoint(tiny_net, tmp_path / "official.pth")
    with caplog.at_level("INFO", logger="madf"):
        net = load_checkpoint(path)
    assert net.config == TINY
    assert _same_weights(net, tiny_net)
    assert net.checkpoint_info["format"] == "official"
    dropped = net.checkpoint_info["dropped"]
    assert len(dropped) == 5 * TINY.levels + 2 and "module.extractor.enc_1.0.weight" in dropped
    assert "ignored 22 keys" in caplog.text and "enc_conv_N.bn" in caplog.text


def test_official_file_outputs_equal_the_official_network(tiny_net, tmp_path):
    """Loaded through madf, the outputs equal the reference forward run on the raw official dict."""
    path = write_official_checkpoint(tiny_net, tmp_path / "official.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)["model"]
    raw = {k[len("module.model."):]: v for k, v in raw.items() if k.startswith("module.model.")}
    net = load_checkpoint(path)
    x, mask = torch.randn(1, 3, 32, 32), (torch.rand(1, 1, 32, 32) > 0.5).float().expand(-1, 3, -1, -1)
    with torch.no_grad():
        ours, ref = net(x * mask, mask), official_forward(raw, x * mask, mask)
    assert max((o - r).abs().max().item() for o, r in zip(ours, ref)) < 1e-5


@pytest.mark.parametrize("prefix", ["", "module."])
def test_bare_state_dict(tiny_net, tmp_path, prefix):
    path = tmp_path / "bare.pth"
    torch.save({prefix + k: v for k, v in tiny_net.state_dict().items()}, path)
    net = load_checkpoint(path, dynamic_filter="unfold")
    assert net.config == TINY and net.dynamic_filter == "unfold" and _same_weights(net, tiny_net)
    assert net.checkpoint_info["format"] == "state_dict"


def test_safetensors_round_trip_keeps_config(tmp_path):
    config = ModelConfig(levels=3, width=0.3, refinement_decoders=1)   # width not inferable from names alone
    net = build_model(config, seed=5)
    save_checkpoint(net, tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config == config and _same_weights(loaded, net)
    assert not list(tmp_path.glob(".*tmp"))


def test_infer_config_of_official_names():
    with torch.device("meta"):
        sd = build_model(OFFICIAL).state_dict()
    assert infer_config(sd) == OFFICIAL


def test_mismatch_names_missing_unexpected_and_misshaped(tiny_net, tmp_path):
    sd = dict(tiny_net.state_dict())
    del sd["att_conv_2.conv.0.bias"]
    sd["att_conv_9.conv.0.bias"] = torch.zeros(3)
    sd["dec_ref1_1.weight"] = torch.zeros(3, 99, 1, 1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "bad.pth")
    msg = str(err.value)
    assert "\n" not in msg
    assert "missing 1 [att_conv_2.conv.0.bias]" in msg
    assert "unexpected 1 [att_conv_9.conv.0.bias]" in msg
    assert re.search(r"mis-shaped 1 \[dec_ref1_1.weight: checkpoint \(3, 99, 1, 1\) vs model \(3, \d+, 1, 1\)\]", msg)


def test_explicit_config_that_does_not_fit(tiny_net, tmp_path):
    save_checkpoint(tiny_net, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match=r"do not fit MADFNet\(levels=7.*missing \d+ .*mis-shaped"):
        load_checkpoint(tmp_path / "tiny.safetensors", config=OFFICIAL)


@pytest.mark.parametrize("content, match", [
    (b"", "too short"),
    (b"hello world, not weights", "neither a torch checkpoint nor a safetensors"),
    (b"\x80\x04\x95garbage-pickle", "cannot be read by torch.load"),
])
def test_unreadable_files(tmp_path, content, match):
    (tmp_path / "x.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "x.pth")


def test_truncated_files(tiny_net, tmp_path):
    write_official_checkpoint(tiny_net, tmp_path / "full.pth")
    save_checkpoint(tiny_net, tmp_path / "full.safetensors")
    for name in ("full.pth", "full.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"cut-{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(CheckpointError, match="corrupt") as err:
            load_checkpoint(tmp_path / f"cut-{name}")
        assert "\n" not in str(err.value)


def test_not_madf_weights(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="not MADF weights"):
        read_checkpoint(tmp_path / "other.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "missing.pth")


def _save_with_header_low_byte(net, path, low_byte=0x80):
    """save_checkpoint, padded through its metadata until the safetensors header length's first byte is
    ``low_byte`` (0x80 is a pickle's first byte: 1 in 256 files madf writes, the bundled one before)."""
    import struct
    for pad in range(256):
        save_checkpoint(net, path, metadata={"note": "x" * pad})
        if path.read_bytes()[0] == low_byte:
            return struct.unpack("<Q", path.read_bytes()[:8])[0]
    raise AssertionError("no padding gave the header length's low byte")


def test_safetensors_whose_header_length_starts_like_a_pickle(tiny_net, tmp_path):
    from madf.model.checkpoint import sniff_format
    path = tmp_path / "w.safetensors"
    length = _save_with_header_low_byte(tiny_net, path)
    assert sniff_format(path) == "safetensors", f"header length {length:#x} taken for a pickle"
    state, _, info = read_checkpoint(path)
    assert info["digest"] and info["format"] == "madf-trt"
    # a flipped byte in the weights is found (was: read as a torch pickle, no digest checked)
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the SHA-256"):
        load_checkpoint(path)


def test_sniffing_by_structure(tiny_net, tmp_path):
    from madf.model.checkpoint import sniff_format
    torch.save(tiny_net.state_dict(), tmp_path / "zip.pth")
    torch.save(tiny_net.state_dict(), tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert sniff_format(tmp_path / "zip.pth") == "torch" and sniff_format(tmp_path / "legacy.pth") == "torch"
    assert read_checkpoint(tmp_path / "legacy.pth")[2]["digest"] is None
    # a safetensors header longer than its file: truncated, said so
    save_checkpoint(tiny_net, tmp_path / "s.safetensors")
    head = (tmp_path / "s.safetensors").read_bytes()[:2000]
    (tmp_path / "cut.safetensors").write_bytes(head)
    if int.from_bytes(head[:8], "little") > len(head) - 8:
        with pytest.raises(CheckpointError, match="truncated"):
            read_checkpoint(tmp_path / "cut.safetensors")


def test_bundled_checkpoint_carries_its_digest(caplog):
    from madf.model.checkpoint import describe_digest
    from madf.weights import BUNDLED
    _, _, info = read_checkpoint(BUNDLED)
    assert info["digest"], "the bundled file must be checked on every load"
    assert describe_digest(info).startswith("verified sha256 ")


def test_weights_without_a_digest_are_said_to_have_none(tiny_net, tmp_path, caplog):
    import logging

    from madf.model.checkpoint import NO_DIGEST, describe_digest
    write_official_checkpoint(tiny_net, tmp_path / "official.pth")
    with caplog.at_level(logging.INFO, logger="madf"):
        net = load_checkpoint(tmp_path / "official.pth")
    assert describe_digest(net.checkpoint_info) == NO_DIGEST
    assert NO_DIGEST in caplog.text
