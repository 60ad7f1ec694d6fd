"""``analysis=correspondence``: ZF Table 1 on the shapes dataset. Occlude the *same part* (a square on a
named keypoint, e.g. an arrow's ``tip`` / ``tail``) in every image of one class and score how consistently
the features change (sign-Hamming Delta, lower = more consistent) at conv5 and fc7, against squares of the
same size at random places (inside the object when ``random_within_object``). Writes
``correspondence.csv`` / ``.json`` in the run folder.

Keypoints are mapped into the network input frame (:mod:`zfnet_exp.data.masks`). The arrow is the default
class because its parts are distinct under rotation; a star's ``tip0``..``tip4`` are numbered along the
outline, so "tip0" is not the same part across rotated stars.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import Subset

from ...data.masks import base_folder, load_mask, mapped_annotation
from ...diagnostics.correspondence import correspondence_table, square_masks
from ...errors import ConfigError
from ...utils.options import at_least, option_rules
from ...utils.tables import write_csv

if TYPE_CHECKING:
    from ..analyze import AnalysisContext


def class_positions(dataset, label: int) -> list[int]:
    """Positions in ``dataset`` (possibly a Subset) whose label is ``label``, without loading images."""
    folder = base_folder(dataset)
    idx = list(dataset.indices) if isinstance(dataset, Subset) else list(range(len(folder)))
    return [p for p, i in enumerate(idx) if folder.targets[i] == label]


@option_rules(
    size=at_least(1),
    subset_size=at_least(1),
    repeats=at_least(1),
    max_images=at_least(1),
    parts=lambda v: None if v else "at least one keypoint name, e.g. [tip, tail]",
)
def run(
    ctx: AnalysisContext,
    *,
    cls: str = "arrow",
    parts: list[str] = ("tip", "tail"),
    size: int = 12,
    layers: list[str] = ("conv5", "fc7"),
    subset_size: int = 5,
    repeats: int = 10,
    random_within_object: bool = True,
    fill: float = 0.0,
    max_images: int | None = None,
) -> dict:
    """Delta of occluding ``parts`` (keypoint names of class ``cls``) with ``size``-px squares vs random
    squares, at ``layers``, over ``repeats`` rounds of ``subset_size`` images (at most ``max_images``)."""
    classes = list(ctx.data.get("classes") or base_folder(ctx.dataset).classes)
    if cls not in classes:
        raise ConfigError(f"analysis.cls={cls!r} is not a class of this dataset; choose one of {', '.join(classes)}.")
    label = classes.index(cls)
    positions = class_positions(ctx.dataset, label)
    if max_images:
        positions = positions[:max_images]
    folder = base_folder(ctx.dataset)
    xs, anns, objs, indices = [], [], [], []
    for p in positions:
        x, _, i = ctx.dataset[p]
        ann = mapped_annotation(folder, i, int(x.shape[-1]))
        if ann is None:
            raise ValueError(f"image {i} has no annotation sidecar: correspondence needs keypoints (shapes dataset)")
        xs.append(x)
        anns.append(ann)
        indices.append(i)
        objs.append(load_mask(folder, i, int(x.shape[-1])))
    images = torch.stack(xs).to(ctx.device)
    hw, square = tuple(images.shape[-2:]), size
    parts = {part: square_masks(torch.tensor([ann["keypoints"][part] for ann in anns]), square, hw) for part in parts}
    rows = correspondence_table(
        ctx.model,
        images,
        parts,
        layers=list(layers),
        random_size=square,
        object_masks=torch.stack(objs) if random_within_object else None,
        subset_size=subset_size,
        repeats=repeats,
        fill=fill,
        seed=ctx.seed,
        batch_size=ctx.batch_size,
    )
    for r in rows:
        r["class"] = cls
        r["size_px"] = square
    out = Path(ctx.out_dir)
    write_csv(rows, out / "correspondence.csv")
    (out / "correspondence.json").write_text(
        json.dumps({"rows": rows, "indices": indices, "class": cls, "n_images": len(indices)}, indent=1)
    )
    for r in rows:
        print(f"{r['region']:>8} {r['layer']:>6}  Delta {r['mean']:.4f} +- {r['std']:.4f}", flush=True)
    return {"rows": rows}
