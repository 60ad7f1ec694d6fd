"""The paper's preprocessing, parameterised by crop size so small fast runs keep the same geometry.

At ``crop_size=224`` this is exactly Zeiler & Fergus Sec. 3: resize the shorter side to 256, take the centre
256x256, then a random 224 crop + horizontal flip for training and the centre 224 crop for validation. At other
crop sizes every length scales by ``crop_size / 224`` (e.g. 112 -> resize 128).

The transforms end in ``uint8 [3, H, W]`` tensors: normalization (mean subtraction, optional division by the
std) happens on the device, batched, in the datamodule's ``on_after_batch_transfer``
(:class:`zfnet_exp.data.normalize.Normalizer`, whose docstring explains the ``paper``/``standard`` choice and
the per-channel vs per-pixel mean). Crops and flips are exact on uint8, so nothing is lost by deferring it.
"""

from __future__ import annotations

from torchvision import transforms as T

__all__ = ["center_uint8", "eval_geometry", "eval_transform", "resize_for", "train_transform"]


def resize_for(crop_size: int) -> int:
    return int(round(crop_size * 256 / 224))


def train_transform(crop_size: int, tensor_input: bool = False) -> T.Compose:
    """PIL image (or uint8 tensor with ``tensor_input``, as the shard backend decodes) -> uint8
    [3, crop, crop]: resize, centre square, random crop, random horizontal flip."""
    size = resize_for(crop_size)
    ops = [T.Resize(size, antialias=True), T.CenterCrop(size), T.RandomCrop(crop_size), T.RandomHorizontalFlip()]
    return T.Compose(ops if tensor_input else [*ops, T.PILToTensor()])


def eval_transform(crop_size: int, tensor_input: bool = False) -> T.Compose:
    """PIL image (or uint8 tensor with ``tensor_input``) -> uint8 [3, crop, crop]: resize, centre square,
    centre crop."""
    geometry = eval_geometry(crop_size, T.InterpolationMode.BILINEAR)
    return geometry if tensor_input else T.Compose([geometry, T.PILToTensor()])


def eval_geometry(crop_size: int, interpolation: T.InterpolationMode = T.InterpolationMode.NEAREST) -> T.Compose:
    """The deterministic resize + crops of :func:`eval_transform` (nearest-neighbour by default, for masks and
    other per-pixel labels)."""
    size = resize_for(crop_size)
    return T.Compose([T.Resize(size, interpolation=interpolation), T.CenterCrop(size), T.CenterCrop(crop_size)])


def center_uint8(size: int) -> T.Compose:
    """PIL image -> uint8 [3, size, size]: shorter side to ``size``, centre crop (the paper's 256x256 image at
    ``size=256``): what the mean image is computed over and what 10-crop evaluation crops from."""
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
