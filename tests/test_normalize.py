"""uint8 batches normalized on the device: the Normalizer against torchvision's float pipeline (ToTensor +
Normalize, what the datasets did before), the record round trip, and the datamodule state in checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from zfnet_exp.data.normalize import NormalizedView, Normalizer, denormalizer, normalized_split
from zfnet_exp.data.transforms import eval_geometry, eval_transform, train_transform

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _photo(seed=0, size=(90, 70)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))


@pytest.mark.parametrize("normalization", ["standard", "paper"])
def test_normalizer_equals_torchvision_float_pipeline(normalization):
    """Reference: the previous float pipeline built from torchvision alone (geometry, ToTensor, Normalize with
    std = 1/255 for the paper's raw-scale mean subtraction)."""
    std = STD if normalization == "standard" else [1 / 255.0] * 3
    reference = T.Compose([eval_geometry(64, T.InterpolationMode.BILINEAR), T.ToTensor(), T.Normalize(MEAN, std)])
    norm = Normalizer(MEAN, STD, normalization)
    imgs = [_photo(s) for s in range(3)]
    batch = torch.stack([eval_transform(64)(im) for im in imgs])
    assert batch.dtype == torch.uint8
    expected = torch.stack([reference(im) for im in imgs])
    out = norm(batch)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    # a single image and float 0..255 input give the same; denormalize inverts to the pixels / 255
    torch.testing.assert_close(norm(batch[1]), expected[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(norm(batch.float()), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(norm.denormalize(out), batch.float() / 255, rtol=0, atol=1e-6)
    assert torch.equal(norm.to_uint8(out), batch)


def test_per_pixel_mean_image_and_channels_last():
    """Per-pixel mean (hand computation: x/255 - mean_image, centre-cropped to the input when larger) and
    channels-last output with the same values."""
    g = torch.Generator().manual_seed(0)
    mean_img = torch.rand(3, 10, 12, generator=g)
    x = torch.randint(0, 256, (2, 3, 6, 8), dtype=torch.uint8, generator=g)
    norm = Normalizer(mean_img, None, "paper", channels_last=True)
    out = norm(x)
    expected = (x.float() / 255 - mean_img[:, 2:8, 2:10]) * 255
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-4)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # the record survives JSON and rebuilds the same normalizer
    again = Normalizer.from_record(json.loads(json.dumps(norm.record())))
    assert again.per_pixel and torch.equal(again(x), norm(x))
    with pytest.raises(ValueError, match="at least as large"):
        norm(torch.zeros(1, 3, 12, 12, dtype=torch.uint8))


def test_denormalizer_and_views():
    """One denormalizer for figures: from a record, a normalizer or a datamodule; min-max without any."""
    norm = Normalizer(MEAN, STD)
    x = norm(torch.randint(0, 256, (1, 3, 4, 4), dtype=torch.uint8))
    for source in (norm, norm.record(), type("DM", (), {"normalizer": norm})()):
        torch.testing.assert_close(denormalizer(source)(x), norm.denormalize(x))
    y = denormalizer(None)(x)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    items = [(torch.full((3, 2, 2), 255, dtype=torch.uint8), 1, 7)]
    view = NormalizedView(items, norm)
    img, label, index = view[0]
    torch.testing.assert_close(img, ((1 - torch.tensor(MEAN)) / torch.tensor(STD)).view(3, 1, 1).expand(3, 2, 2))
    assert (label, index, len(view)) == (1, 7, 1)
    # datamodules without a normalizer (float datasets) are returned as they are
    assert normalized_split(type("DM", (), {"val_set": items})(), "val") is items


def test_datamodule_batches_are_uint8_and_state_round_trips(data_dir):
    """The loader yields uint8; ``on_after_batch_transfer`` gives what the dataset's float pipeline gave; the
    state_dict restores the same normalization in a fresh datamodule (resume) and names the classes."""
    from zfnet_exp.data import ShapesDataModule

    kw = dict(cache_dir=str(data_dir), image_size=64, train_per_class=3, val_per_class=2, batch_size=4, num_workers=0)
    dm = ShapesDataModule(normalization="paper", **kw)
    dm.prepare_data()
    dm.setup("fit")
    x, y, idx = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 64, 64)
    xn, y2, idx2 = dm.on_after_batch_transfer([x, y, idx], 0)
    assert torch.equal(y2, y) and torch.equal(idx2, idx)
    reference = T.Compose(
        [eval_geometry(64, T.InterpolationMode.BILINEAR), T.ToTensor(), T.Normalize(dm.mean, [1 / 255] * 3)]
    )
    path = dm.val_set.samples[int(idx[1])][0]
    torch.testing.assert_close(xn[1], reference(Image.open(path).convert("RGB")), rtol=0, atol=1e-4)
    state = dm.state_dict()
    assert state["classes"] == dm.classes and state["image_size"] == 64 and state["normalization"] == "paper"
    fresh = ShapesDataModule(normalization="standard", **kw)
    fresh.load_state_dict(json.loads(json.dumps(state)))
    fresh.prepare_data()
    fresh.setup("fit")
    assert torch.equal(fresh.on_after_batch_transfer([x, y, idx], 0)[0], xn)
    # training crops are uint8 too, with the random crop/flip geometry unchanged
    assert train_transform(64)(_photo()).dtype == torch.uint8
