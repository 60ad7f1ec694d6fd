"""The paper's preprocessing, parameterised by crop size so small fast runs keep the same geometry.

At ``crop_size=224`` this is exactly Zeiler & Fergus Sec. 3: resize the shorter side to 256, take the centre
256x256, then a random 224 crop + horizontal flip for training and the centre 224 crop for validation. At other
crop sizes every length scales by ``crop_size / 224`` (e.g. 112 -> resize 128).

Mean subtraction: the paper subtracts the per-pixel mean image; we subtract the per-*channel* mean computed from
the training split (the per-pixel mean of a dataset whose objects are placed uniformly is nearly constant
across pixels, and a per-channel mean works for any crop size). ``normalization="paper"`` then keeps the raw
[0, 255] pixel scale (inputs roughly in [-128, 128], as in the paper, which the N(0, 0.01^2) init and the LRN
constants assume); ``"standard"`` also divides by the per-channel std (unit-variance inputs, the modern choice).
"""

from __future__ import annotations

from torchvision import transforms as T

NORMALIZATIONS = ("paper", "standard")


def resize_for(crop_size: int) -> int:
    return int(round(crop_size * 256 / 224))


def normalize(mean: list[float], std: list[float], normalization: str) -> T.Normalize:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    if normalization == "paper":
        return T.Normalize(mean, [1 / 255.0] * 3)
    return T.Normalize(mean, std)


def train_transform(crop_size: int, mean, std, normalization: str = "standard") -> T.Compose:
    size = resize_for(crop_size)
    return T.Compose([
        T.Resize(size), T.CenterCrop(size), T.RandomCrop(crop_size), T.RandomHorizontalFlip(),
        T.ToTensor(), normalize(mean, std, normalization),
    ])


def eval_transform(crop_size: int, mean, std, normalization: str = "standard") -> T.Compose:
    size = resize_for(crop_size)
    return T.Compose([
        T.Resize(size), T.CenterCrop(size), T.CenterCrop(crop_size), T.ToTensor(), normalize(mean, std, normalization),
    ])


def eval_geometry(crop_size: int):
    """The deterministic resize + crops of :func:`eval_transform`, for masks and other per-pixel labels."""
    size = resize_for(crop_size)
    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop(size),
                      T.CenterCrop(crop_size)])


def denormalizer(params: dict | None):
    """Network input -> [0, 1] RGB from a normalization record (``mean``, ``std``, ``normalization``, as
    datamodules report and checkpoints store it); without one, min-max scaling per call."""
    if params and params.get("mean"):
        return lambda x: denormalize(x, params["mean"], params["std"], params.get("normalization", "standard"))
    return lambda x: (x - x.amin()) / (x.amax() - x.amin()).clamp(min=1e-8)


def denormalize(x, mean, std, normalization: str = "standard"):
    """Normalized tensor [.., 3, H, W] back to [0, 1] RGB, for figures."""
    import torch

    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    scale = 1 / 255.0 if normalization == "paper" else torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * scale + mean_t).clamp(0, 1)
