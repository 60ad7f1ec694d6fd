"""Data backends behind the same datamodules (``data.backend=default|gpu_decode|shards``).

Every backend starts from the same thing, a list of ``(file path, label)`` samples (an ImageFolder's
``samples``, or any layout's parser), and ends in the same batch contract: ``(uint8 [B,3,S,S], label,
dataset index)`` on the device, normalized there by the datamodule's normalizer. They differ in where the
JPEG is decoded and what is read from disk:

* ``default``  -- DataLoader workers decode with libjpeg-turbo (PIL, with ``draft()`` DCT downscaling for
  large JPEGs) and crop/flip on uint8. Runs everywhere.
* ``gpu_decode`` -- workers only read the encoded bytes; the batch is decoded on the GPU by nvJPEG
  (``torchvision.io.decode_jpeg(list, device="cuda")``) and resized/cropped/flipped there
  (:mod:`.gpu_decode`). Without CUDA it falls back to ``default`` with one warning.
* ``shards`` -- LitData chunks written once by ``python -m zfnet_exp.data.shards`` (images re-encoded at a
  shorter side of 256, JPEG quality 90): sequential reads, streaming from local disk or object storage,
  equal batches on every rank, mid-epoch resume (:mod:`zfnet_exp.data.shards`).
"""

from __future__ import annotations

import warnings

import torch

from ...errors import ConfigError

BACKENDS = ("default", "gpu_decode", "shards")
_warned: set[str] = set()


def resolve_backend(name: str) -> str:
    """The backend that will actually run: ``name``, checked, or ``default`` for ``gpu_decode`` without CUDA
    (warned once per process)."""
    if name not in BACKENDS:
        raise ConfigError(f"data.backend={name!r} is not a data backend; choose one of {', '.join(BACKENDS)}.")
    if name == "gpu_decode" and not torch.cuda.is_available():
        if "gpu_decode" not in _warned:
            _warned.add("gpu_decode")
            warnings.warn(
                "data.backend=gpu_decode needs CUDA (nvJPEG); none is available, so the default backend "
                "(CPU decode in DataLoader workers) is used instead.",
                stacklevel=2,
            )
        return "default"
    return name


__all__ = ["BACKENDS", "resolve_backend"]
