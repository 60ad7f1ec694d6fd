"""Benchmark: what the dissect callback adds to a validation epoch at its default settings (issue goal: <= 10%).

``python -m zfnet_exp.benchmarks.dissect [--size 64] [--val-images 500] [--images 200] [--batch 30] [--all-layers]
[--record]``

Runs the validation forward passes of the default run (ZFNet, 10 classes, 64 px, 500 validation images, batch
30) twice in one process: plain, and with what the callback adds per batch (forward hooks on its layers, the
deepest three conv layers by default, every one with ``--all-layers``,
copying the activations of the images in its subset); then the callback's epoch-end work: the dissection of
``--images`` images (exact thresholds, upsampling, IoU against 44 concept masks at half the input size) from
those activations. Images are a fixed random tensor held in memory, so data loading does not dilute the
overhead (a real epoch's loading and other callbacks make the percentage smaller); the masks are 10 real concept
mask stacks (label maps, as the callback keeps them) repeated. The concept masks are
computed once per run (replaying the generator, about 10 ms an image); that one-time cost is printed apart.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..callbacks.dissect import DEFAULT_DEPTH
from ..data.concepts import SHAPES_CONCEPTS, label_maps, shapes_concept_masks
from ..data.shapes import ShapesSpec
from ..data.transforms import eval_geometry
from ..diagnostics.dissect import dissect_batches
from ..diagnostics.layers import capture_activations, conv_layer_names
from ..models import create_model
from ..utils.records import Figure, add_record_option, recording
from ..utils.tensors import seeded_subset


def _validation(model, images, batch, layers=None, subset=None) -> tuple[float, dict]:
    """One validation pass; with ``layers``, copy the subset's activations into buffers as the callback does."""
    buffers: dict[str, torch.Tensor] = {}
    position = {i: k for k, i in enumerate(subset or [])}
    start = time.perf_counter()
    with torch.inference_mode():
        if layers is None:
            for i in range(0, len(images), batch):
                model(images[i : i + batch])
        else:
            with capture_activations(model, layers, keep="first") as acts:
                for i in range(0, len(images), batch):
                    acts.clear()
                    model(images[i : i + batch])
                    hits = [(j - i, position[j]) for j in range(i, min(i + batch, len(images))) if j in position]
                    for layer in layers:
                        a = acts[layer]
                        if layer not in buffers:
                            buffers[layer] = torch.zeros(len(position), *a.shape[1:])
                        buffers[layer][[k for _, k in hits]] = a[[r for r, _ in hits]]
    return time.perf_counter() - start, buffers


def _dissect(buffers: dict, layers, masks: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()

    def batches():
        for s in range(0, len(masks), batch):
            yield {layer: buffers[layer][s : s + batch] for layer in layers}, masks[s : s + batch]

    dissect_batches(batches, layers, SHAPES_CONCEPTS.names, SHAPES_CONCEPTS.categories)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="zfnet")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--val-images", type=int, default=500)
    ap.add_argument("--images", type=int, default=200, help="the callback's num_images")
    ap.add_argument("--batch", type=int, default=30)
    ap.add_argument("--all-layers", action="store_true", help="every conv layer, not the callback's default")
    ap.add_argument("--repeats", type=int, default=10, help="interleaved plain/hooked pairs")
    ap.add_argument("--threads", type=int, default=None)
    add_record_option(ap)
    args = ap.parse_args(argv)
    with recording("dissect", args.record, "python -m zfnet_exp.benchmarks.dissect", argv) as rec:
        result = measure(args)
        units = {"overhead_pct": "%", "per_image_mask_ms": "ms"}
        rec.extend(Figure(k, v, units.get(k, "s")) for k, v in result.items())
    return result


def measure(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, input_size=args.size, init="kaiming").eval()
    images = torch.randn(args.val_images, 3, args.size, args.size)
    layers = conv_layer_names(model) if args.all_layers else conv_layer_names(model)[-DEFAULT_DEPTH:]
    subset = seeded_subset(args.val_images, args.images, 0)
    side = max(1, args.size // 2)
    spec = ShapesSpec(image_size=int(round(args.size * 256 / 224)), safe_size=args.size)
    start = time.perf_counter()
    real = [torch.from_numpy(shapes_concept_masks(spec, "val", i, i % 10)) for i in range(10)]
    per_mask = (time.perf_counter() - start) / 10
    # the callback's form: real concept masks through the eval crop, at half the input, as label maps
    crop = eval_geometry(args.size)
    maps = [label_maps(F.interpolate(crop(m.to(torch.uint8))[None].float(), size=side)[0].bool()) for m in real]
    masks = torch.stack([maps[i % 10] for i in range(len(subset))])
    _validation(model, images[: args.batch], args.batch)  # warm-up
    plain, hooked, epoch_end = [], [], []
    for _ in range(args.repeats):  # interleaved pairs: robust to other load on the machine
        plain.append(_validation(model, images, args.batch)[0])
        t, buffers = _validation(model, images, args.batch, layers, subset)
        hooked.append(t)
        epoch_end.append(_dissect(buffers, layers, masks, 50))
    # the hooks' share is a difference of two ~1-s passes, smaller than the run-to-run noise of either: it is
    # taken as the median of the paired differences (each hooked pass right after its plain one, so a change
    # of the machine's load hits both), with the spread of those differences printed beside it
    p, e = min(plain), min(epoch_end)
    diffs = np.array(hooked) - np.array(plain)
    hooks = float(np.median(diffs))
    h = p + hooks
    overhead = 100 * (hooks + e) / p
    q1, q3 = np.percentile(diffs, [25, 75])
    print(
        f"{args.model} at {args.size} px, {args.val_images} validation images, batch {args.batch}, "
        f"{torch.get_num_threads()} threads; dissecting {len(subset)} images, layers {', '.join(layers)}, "
        f"{len(SHAPES_CONCEPTS)} concepts at {side}x{side}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"plain validation pass        : {p:8.3f} s")
    print(
        f"the callback's hooks         : {hooks:+8.3f} s  (median of {len(diffs)} paired differences; "
        f"quartiles {q1:+.3f} / {q3:+.3f} s)"
    )
    print(f"epoch-end dissection         : {e:8.3f} s")
    print(f"overhead per epoch           : {overhead:8.1f} %  (goal <= 10%)")
    print(f"concept masks, once per run  : {per_mask * len(subset):8.3f} s ({1000 * per_mask:.1f} ms an image)")
    return {
        "plain_s": p,
        "hooked_s": h,
        "hooks_s": hooks,
        "hooks_q1_s": float(q1),
        "hooks_q3_s": float(q3),
        "dissect_s": e,
        "overhead_pct": overhead,
        "masks_once_s": per_mask * len(subset),
        "per_image_mask_ms": float(np.round(1000 * per_mask, 2)),
    }


if __name__ == "__main__":
    main()
