"""The ``gpu_decode`` backend: loader workers read encoded JPEG bytes; decode, resize and crop run batched on
the GPU in ``on_after_batch_transfer``.

Why this and not NVIDIA DALI: torchvision is already a dependency, ``decode_jpeg(list_of_tensors,
device="cuda")`` batches nvJPEG (and the A100/H100 hardware JPEG engine where present) behind one call, and the
rest of the pipeline (samplers, DDP sharding, the dataset index a diagnostic needs, Lightning's resume) stays
the ordinary DataLoader. DALI is faster still on some set-ups but brings its own pipeline, reader and
sharding, a CUDA-version-specific wheel and a second way to do everything; it can be added as another
backend behind the same datamodule if measurements ever show this one to be the limit.

The geometry equals the default backend's (:mod:`zfnet_exp.data.transforms`): shorter side resized to
``resize_for(S)`` (bilinear, antialiased), centre square, then a random S crop + horizontal flip (training) or
the centre S crop (evaluation). Non-JPEG files (the generated PNGs) are decoded on the CPU in the worker,
as the default backend would.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as TF

from ..transforms import resize_for

JPEG_MAGIC = b"\xff\xd8"


class EncodedImages(Dataset):
    """``(file path, label)`` samples -> ``(encoded JPEG bytes as uint8 [N], label, index)``; non-JPEG files
    are decoded here (uint8 [3,H,W]) since nvJPEG reads JPEG only."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        data = read_file(path)
        if bytes(data[:2].tolist()) != JPEG_MAGIC:
            data = decode_image(data, mode=ImageReadMode.RGB)
        return data, label, index


def collate_encoded(items):
    """A batch of variable-length byte tensors stays a list (one tensor per image)."""
    data, labels, index = zip(*items)
    return list(data), torch.tensor(labels), torch.tensor(index)


def decode_batch(
    data: list[Tensor],
    image_size: int,
    train: bool,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Encoded (or already decoded) images -> uint8 ``[B,3,S,S]`` on ``device`` with the paper geometry."""
    device = torch.device(device)
    jpeg = [i for i, d in enumerate(data) if d.ndim == 1]
    images: list[Tensor | None] = [None if d.ndim == 1 else d.to(device) for d in data]
    if jpeg:
        decoded = decode_jpeg([data[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
        for i, img in zip(jpeg, decoded):
            images[i] = img
    size = resize_for(image_size)
    out = torch.empty((len(data), 3, image_size, image_size), dtype=torch.uint8, device=device)
    if train:
        offsets = torch.randint(0, size - image_size + 1, (len(data), 2), generator=generator).tolist()
        flips = (torch.rand(len(data), generator=generator) < 0.5).tolist()
    for b, img in enumerate(images):
        img = TF.center_crop(TF.resize(img, size, antialias=True), size)
        if train:
            top, left = offsets[b]
            img = img[:, top : top + image_size, left : left + image_size]
            if flips[b]:
                img = img.flip(-1)
        else:
            img = TF.center_crop(img, image_size)
        out[b] = img
    return out
