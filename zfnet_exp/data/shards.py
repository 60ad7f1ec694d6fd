"""The ``shards`` backend: a dataset re-encoded once into LitData chunks, streamed from local disk or object storage.

    python -m zfnet_exp.data.shards <folder> <out> --size 256 --quality 90

re-encodes ``<folder>/{train,val}/<class>/*`` (ImageFolder layout; any other layout converts through
:func:`convert_samples`, which takes ``(file path, label)`` samples) with the shorter side resized to ``size``
and JPEG quality ``quality``, into ``<out>/{train,val}/`` (LitData ``index.json`` + chunk files) and
``<out>/meta.json`` (classes, per-channel mean/std, counts). Train with ``data.backend=shards
data.root=<out>``.

Why LitData and not WebDataset: LitData is Lightning's own, and gives what DDP training needs without
extra code: every rank and worker gets the same number of items (``drop_last``), the loader has a
``state_dict`` for mid-epoch resume, and it streams from S3/GCS/local with a local cache. WebDataset's tars
are more portable (DALI reads them), but equal batches per rank need resampling + ``with_epoch`` and resume
is not built in.

Resumable: each split is written in parts of ``part_size`` images (``<out>/<split>/.parts/NNNNN``), each
first into a temporary folder that is renamed when complete; an interrupted conversion re-run with the same
arguments skips the finished parts, redoes the unfinished one and produces the same files. The parts are
merged into ``<out>/<split>`` at the end (then deleted). Items keep their position in the source split as
their dataset index, so a diagnostic's index means the same image in both formats.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from tqdm.auto import tqdm

from .folder import IndexedImageFolder, read_rgb
from .stats import channel_stats

SPLITS = ("train", "val")
FORMAT_VERSION = 1


def encode(path: str, size: int, quality: int) -> np.ndarray:
    """One image -> JPEG bytes (uint8 array), shorter side ``size`` (never upscaled), RGB."""
    img = read_rgb(path, draft_size=size)
    w, h = img.size
    scale = size / min(w, h)
    if scale < 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8).copy()


def _write_part(samples, start: int, part_dir: Path, size: int, quality: int, chunk_bytes: str, bar) -> None:
    from litdata.processing.complete import complete_dataset
    from litdata.streaming.writer import BinaryWriter

    tmp = part_dir.with_name(part_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    writer = BinaryWriter(str(tmp), chunk_bytes=chunk_bytes)
    for k, (path, label) in enumerate(samples):
        writer[k] = {"image": encode(path, size, quality), "label": int(label), "index": start + k}
        bar.update(1)
    writer.done()
    complete_dataset(str(tmp))
    tmp.rename(part_dir)


def convert_samples(
    samples: Sequence[tuple[str, int]],
    out: str | Path,
    size: int = 256,
    quality: int = 90,
    part_size: int = 10_000,
    chunk_bytes: str = "64MB",
    progress: bool = True,
    desc: str = "",
) -> Path:
    """Write ``samples`` as one LitData dataset in ``out`` (resumable; see the module docstring)."""
    from litdata import merge_datasets

    out = Path(out)
    if (out / "index.json").is_file():
        return out
    parts_dir = out.parent / f".{out.name}.parts"
    starts = list(range(0, len(samples), part_size))
    bar = tqdm(
        total=len(samples), desc=desc or f"Converting {out}", disable=not progress, mininterval=2.0, file=sys.stdout
    )
    parts = []
    for p, start in enumerate(starts):
        part = parts_dir / f"{p:05d}"
        parts.append(part)
        if (part / "index.json").is_file():
            bar.update(min(part_size, len(samples) - start))
            continue
        _write_part(samples[start : start + part_size], start, part, size, quality, chunk_bytes, bar)
        if not sys.stdout.isatty() and progress:
            rank_zero_info(f"{desc}: {min(start + part_size, len(samples))}/{len(samples)} images")
    bar.close()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if len(parts) == 1:
        shutil.copytree(parts[0], tmp)
    else:
        tmp.mkdir(parents=True)
        merge_datasets([str(p) for p in parts], str(tmp), max_workers=4)
    tmp.rename(out)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return out


def convert_folder(
    folder: str | Path,
    out: str | Path,
    size: int = 256,
    quality: int = 90,
    part_size: int = 10_000,
    progress: bool = True,
) -> Path:
    """An ImageFolder dataset (``folder/{train,val}/<class>/*``) -> shards in ``out`` + ``out/meta.json``."""
    folder, out = Path(folder).expanduser(), Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    splits = {s: IndexedImageFolder(folder / s) for s in SPLITS}
    classes = splits["train"].classes
    for split, ds in splits.items():
        convert_samples(
            ds.samples,
            out / split,
            size,
            quality,
            part_size,
            progress=progress,
            desc=f"Converting {split} ({len(ds)} images)",
        )
    meta_path = out / "meta.json"
    if not meta_path.is_file():
        files = [p for p, _ in splits["train"].samples]
        mean, std = channel_stats(files)
        meta = {
            "format": FORMAT_VERSION,
            "source": str(folder),
            "size": size,
            "quality": quality,
            "classes": classes,
            "mean": mean,
            "std": std,
            **{f"num_{s}": len(ds) for s, ds in splits.items()},
        }
        meta_path.write_text(json.dumps(meta, indent=2))
    return out


def read_meta(root: str | Path) -> dict:
    from ..errors import DataError

    meta = Path(root) / "meta.json"
    if not meta.is_file():
        raise DataError(
            f"{root} is not a shard folder (no meta.json). Convert an ImageFolder dataset once with "
            f"`python -m zfnet_exp.data.shards <folder> {root} --size 256 --quality 90`, then pass "
            f"data.root={root} data.backend=shards."
        )
    return json.loads(meta.read_text())


def decode_item(item: dict, transform=None):
    """A shard item -> ``(uint8 [3,H,W] after ``transform``, label, index)``."""
    image = decode_jpeg(torch.from_numpy(item["image"]), mode=ImageReadMode.RGB)
    if transform is not None:
        image = transform(image)
    return image, int(item["label"]), int(item["index"])


def streaming_dataset(
    root: str | Path, split: str, transform, shuffle: bool, drop_last: bool | None = None, seed: int = 42
):
    """A LitData ``StreamingDataset`` of ``root/split`` yielding ``(uint8 image, label, index)``; it splits
    itself over ranks and workers (no sampler), equally when ``drop_last``."""
    from litdata import StreamingDataset

    ds = StreamingDataset(
        str(Path(root) / split),
        shuffle=shuffle,
        drop_last=drop_last,
        seed=seed,
        transform=partial(decode_item, transform=transform),
    )
    ds.classes = read_meta(root)["classes"]
    return ds


class ShardMap(Dataset):
    """Map-style random access to a shard split (items in source order), for diagnostics (``val_set[i]``);
    ``transform`` (uint8 tensor -> uint8 tensor) may be swapped like an ImageFolder's."""

    def __init__(self, root: str | Path, split: str, transform=None):
        from litdata import StreamingDataset

        self.root, self.split, self.transform = Path(root), split, transform
        self._stream = StreamingDataset(str(self.root / split), shuffle=False)
        self.classes = read_meta(root)["classes"]
        self.class_names = list(self.classes)

    def __len__(self) -> int:
        return len(self._stream)

    def __getitem__(self, index: int):
        return decode_item(self._stream[index], self.transform)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m zfnet_exp.data.shards", description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", help="dataset in ImageFolder layout: FOLDER/{train,val}/<class>/*")
    ap.add_argument("out", help="output folder for the shards")
    ap.add_argument("--size", type=int, default=256, help="shorter side after re-encoding (default 256)")
    ap.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    ap.add_argument("--part-size", type=int, default=10_000, help="images per resumable part")
    args = ap.parse_args(argv)
    from ..errors import UserError, exit_with

    try:
        out = convert_folder(args.folder, args.out, args.size, args.quality, args.part_size)
    except UserError as e:
        exit_with(str(e))  # the project's one "error: ..." paragraph, exit code 2
    print(f"Shards written to {out}; train with data.backend=shards data.root={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
