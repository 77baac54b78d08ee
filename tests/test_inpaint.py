import logging

import numpy as np
import pytest
import torch
from PIL import Image

from madf.common.errors import DeviceError, InputError
from madf.inpaint import imaging
from madf.inpaint.inpainter import Inpainter, TorchBackend
from madf.model.pipeline import InpaintModel

from conftest import random_pair


@pytest.fixture
def inpainter(tiny_net):
    return Inpainter(TorchBackend(tiny_net))


@pytest.mark.parametrize("h, w", [(16, 16), (21, 37), (5, 3)])
def test_any_size_known_pixels_exact(inpainter, h, w):
    image, hole = random_pair(h, w)
    out = inpainter(image, hole)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], image[~hole])
    assert not np.array_equal(out[hole], image[hole])


def test_equals_the_contract_on_the_padded_image(tiny_net):
    from madf.inpaint.strategy import Strategy
    image, hole = random_pair(21, 37, seed=1)
    # the network's output itself: border matching is the pipeline's own step after it (tests/test_real_size.py)
    out = Inpainter(TorchBackend(tiny_net), strategy=Strategy(match_border=False))(image, hole)
    img_t, mask_t = imaging.to_contract(image, hole, 16)
    with torch.no_grad():
        ref = InpaintModel(tiny_net)(torch.from_numpy(img_t), torch.from_numpy(mask_t)).numpy()
    expected = imaging.to_uint8(ref[0, :, :21, :37].transpose(1, 2, 0))
    assert np.array_equal(out[hole], expected[hole])


def test_pil_in_pil_out_and_mask_conventions(inpainter):
    image, hole = random_pair(20, 20, seed=2)
    mask_png = Image.fromarray((hole * 255).astype(np.uint8))
    out = inpainter(Image.fromarray(image), mask_png)
    assert isinstance(out, Image.Image) and out.size == (20, 20)
    inverted = Image.fromarray(((~hole) * 255).astype(np.uint8))
    assert np.array_equal(np.asarray(out), inpainter(image, inverted, invert_mask=True))


def test_batches_equal_single_images(tiny_net):
    pairs = [random_pair(16, 16, seed=i) for i in range(3)] + [random_pair(40, 20, seed=9)]
    single = list(Inpainter(TorchBackend(tiny_net)).inpaint_many(pairs))
    batched = list(Inpainter(TorchBackend(tiny_net), batch_size=3).inpaint_many(pairs))
    assert len(batched) == 4
    for a, b in zip(single, batched):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1   # batched BLAS may round the last bit


def test_empty_mask_copies_through_with_a_warning(inpainter, caplog):
    image, _ = random_pair(16, 16)
    with caplog.at_level(logging.WARNING, logger="madf"):
        out = inpainter(image, np.zeros((16, 16), bool))
    assert np.array_equal(out, image)
    assert "no hole pixels" in caplog.text and "invert the mask" in caplog.text


def test_size_mismatch_is_an_input_error(inpainter):
    image, _ = random_pair(16, 16)
    with pytest.raises(InputError, match="image is 16x16 but its mask is 15x16"):
        inpainter(image, np.ones((16, 15), bool))


def test_cuda_request_without_gpu_is_clear(tiny_net):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError, match="sees no CUDA GPU; use --device cpu"):
        TorchBackend(tiny_net, device="cuda")


def test_unknown_device_is_clear(tiny_net):
    with pytest.raises(DeviceError, match="'tpu' is not a device; use cpu, cuda or cuda:N"):
        TorchBackend(tiny_net, device="tpu")
