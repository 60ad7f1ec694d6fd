"""Benchmark: images/s of each dataset's training pipeline (decode + resize/crop + flip + collate), per
DataLoader worker and in total, on a generated JPEG set.

``python -m zfnet_exp.benchmarks.loader [--datasets imagenet,caltech101,voc2012,shapes] [--workers 1,8] [--record]``

The pipeline measured is the datamodule's own ``train_dataloader()`` (robust loader, paper transforms, sampler,
collate), so batches are what training receives: ``uint8 [B,3,S,S]``, normalized later on the device. Images are
generated once into ``--root`` at each dataset's typical size (ImageNet's most common 500x375, Caltech-101 about
300x200, Caltech-256 about 350x300, PASCAL VOC 500x375; JPEG quality 90, smooth random content so files have a
realistic size), in ImageNet's folder layout (the loading code is the same for every folder layout). ``shapes``
is the generated dataset as training uses it (73-px PNGs at image size 64).

Each figure is the median over ``--windows`` timed windows after one warm-up window (worker start-up excluded).
Run it on a quiet machine: the per-worker figure is the decode rate of one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..data import ImageNetDataModule, ShapesDataModule
from ..utils.records import Figure, add_record_option, recording
from ..utils.tables import write_csv

# name -> (width, height) of the generated JPEGs; None: the generated shapes dataset
PROFILES: dict[str, tuple[int, int] | None] = {
    "imagenet": (500, 375),
    "caltech101": (300, 200),
    "caltech256": (350, 300),
    "voc2012": (500, 375),
    "shapes": None,
}


def natural_image(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Smooth random colour fields plus fine noise: JPEG sizes close to photographs' (~60-120 kB at 500x375)."""
    low = Image.fromarray(rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8))
    img = np.asarray(low.resize((width, height), Image.BICUBIC), dtype=np.int16)
    img = img + rng.integers(-12, 13, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def generate_jpegs(root: Path, size: tuple[int, int], images: int, classes: int = 8, quality: int = 90) -> Path:
    """``root/{train,val}/<class>/*.JPEG`` (val: one image per class); reused when already complete."""
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    per_class = max(1, images // classes)
    for c in tqdm(range(classes), desc=f"generating {per_class * classes} JPEGs {size[0]}x{size[1]}", unit="class"):
        for split, n in (("train", per_class), ("val", 1)):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(n):
                natural_image(*size, rng).save(folder / f"n{c:08d}_{k}.JPEG", quality=quality)
    done.write_text("ok")
    return root


def datamodule(name: str, root: Path, image_size: int, batch: int, workers: int):
    common = dict(image_size=image_size, batch_size=batch, num_workers=workers, mean=[0.5] * 3, std=[0.25] * 3)
    if PROFILES[name] is None:
        dm = ShapesDataModule(
            cache_dir=str(root),
            image_size=64,
            train_per_class=100,
            val_per_class=1,
            **{k: v for k, v in common.items() if k != "image_size"},
        )
        dm.prepare_data()
    else:
        dm = ImageNetDataModule(root=str(generate_jpegs(root / name, PROFILES[name], 0)), **common)
    dm.setup("fit")
    return dm


def images_per_second(loader, windows: int, batches_per_window: int) -> tuple[float, torch.dtype]:
    """Median rate over ``windows`` windows of ``batches_per_window`` batches, after one warm-up window, and the
    dtype of the batches (uint8: normalization is left to the device)."""
    it = iter(loader)
    rates, dtype = [], None
    for w in range(windows + 1):
        n, start = 0, time.perf_counter()
        for _ in range(batches_per_window):
            try:
                x = next(it)[0]
            except StopIteration:
                it = iter(loader)
                x = next(it)[0]
            dtype = x.dtype
            n += len(x)
        if w:  # window 0 includes worker start-up
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates), dtype


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="imagenet,caltech101,caltech256,voc2012,shapes")
    ap.add_argument("--workers", default=f"1,{os.cpu_count()}", help="comma-separated worker counts")
    ap.add_argument("--image-size", type=int, default=224, help="network input (crop) size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=1024, help="generated training images per dataset")
    ap.add_argument("--windows", type=int, default=3)
    ap.add_argument("--batches-per-window", type=int, default=6)
    ap.add_argument("--root", default=None, help="where the generated images go (reused); default: a temp dir")
    ap.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    add_record_option(ap)
    args = ap.parse_args(argv)
    with recording("loader", args.record, "python -m zfnet_exp.benchmarks.loader", argv) as rec:
        rows = measure(args)
        rec.extend(figures(rows))
    return rows


def figures(rows: list[dict]) -> list[Figure]:
    """The record's rows: img/s in total and per worker, per dataset and worker count."""
    out = []
    for r in rows:
        scope = f"{r['dataset']}/workers{r['workers']}"
        out += [Figure(f"{scope}/img_per_s", r["img_per_s"], "img/s"),
                Figure(f"{scope}/img_per_s_per_worker", r["img_per_s_per_worker"], "img/s")]  # fmt: skip
    return out


def measure(args: argparse.Namespace) -> list[dict]:
    """Time and print the workload of ``args`` (what :func:`main` parsed); return the numbers for the caller and
    the record."""
    torch.set_num_threads(1)  # the loader's cost, not intra-op parallelism in the main process
    root = Path(args.root or tempfile.mkdtemp(prefix="zfnet-loader-bench-"))
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PROFILES))
    if unknown:
        raise SystemExit(f"unknown dataset(s) {unknown}; choose from {', '.join(PROFILES)}")
    for name in names:
        if PROFILES[name] is not None:
            generate_jpegs(root / name, PROFILES[name], args.images)
    rows = []
    for name in names:
        for workers in [int(w) for w in args.workers.split(",")]:
            dm = datamodule(name, root, args.image_size, args.batch, workers)
            rate, dtype = images_per_second(dm.train_dataloader(), args.windows, args.batches_per_window)
            size = "x".join(map(str, PROFILES[name])) if PROFILES[name] else "73x73 png"
            rows.append(
                {
                    "dataset": name,
                    "source": size,
                    "crop": dm.image_size,
                    "workers": workers,
                    "dtype": str(dtype).removeprefix("torch."),
                    "img_per_s": round(rate, 1),
                    "img_per_s_per_worker": round(rate / max(workers, 1), 1),
                }
            )
            print(
                f"{name:<11} {size:>10} -> {dm.image_size:>3}px  workers={workers:<3} {rate:8.1f} img/s "
                f"({rate / max(workers, 1):.1f} per worker), batches {dtype}",
                flush=True,
            )
    if args.csv:
        write_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
