"""Offline Network Dissection: ``python analyze.py ckpt=<ckpt or run folder> analysis=dissect
[analysis.concepts=shapes|voc|broden] [analysis.concepts_root=<folder>]``.

Labels every unit of ``layers`` of the checkpoint's model against pixel-level concepts
(:mod:`zfnet_exp.diagnostics.dissect`, NetDissect's procedure) from one of three sources:

- ``shapes``: the generated data's exact concepts (:mod:`zfnet_exp.data.concepts`), from the checkpoint's own
  generated folder (or ``concepts_root``), split ``split`` (default val);
- ``voc``: PASCAL VOC 2012 ``SegmentationClass`` masks (background + 20 object classes on real photographs;
  ``concepts_root`` holds ``VOCdevkit``; ``ImageSets/Segmentation/<split>.txt``, default val);
- ``broden``: a NetDissect-Lite Broden folder (``index.csv`` + label tables; ~1,200 concepts in object, part,
  scene, material, texture and colour), all rows or those of ``split``.

Images are fed at ``image_size`` (default: the checkpoint's training crop) with the checkpoint's normalization;
masks at ``mask_size`` (default: half of it, NetDissect's label resolution). ``num_images`` takes that many
evenly spaced items. Writes ``diag/<layer>/dissect`` (figure + JSON per layer) and ``dissect/units`` (a table of
every unit: layer, unit, concept, category, IoU, detector); returns each layer's summary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torchvision import transforms as T

from ...data.normalize import Normalizer
from ...data.transforms import eval_transform
from ...diagnostics.dissect import OPTION_RULES
from ...diagnostics.layers import conv_layer_names
from ...errors import UserError
from ...figures import dissect as figure
from ...figures import emit
from ...runs import evenly_spaced_subset
from ...utils.options import at_least, one_of, option_rules

if TYPE_CHECKING:
    from ..analyze import AnalysisContext

SOURCES = ("shapes", "voc", "broden")


def concept_dataset(
    source: str, root: str | None, split: str | None, data: dict, image_size: int, mask_size: int
) -> tuple[Any, list[str], list[str]]:
    """The concept dataset of ``source`` (items: image as the network takes it, masks or label maps, index),
    its concept names and their categories."""
    transform = T.Compose([eval_transform(image_size), Normalizer.from_record(data)])
    if source == "shapes":
        from ...data.concepts import SHAPES_CONCEPTS, ShapesConcepts

        folder = root or data.get("root")
        if not folder:
            raise UserError(
                "analysis.concepts=shapes: the checkpoint records no dataset folder; set "
                "analysis.concepts_root=<generated shapes folder> (the one holding meta.json)."
            )
        ds = ShapesConcepts.from_folder(folder, split or "val", image_size, transform=transform, mask_size=mask_size)
        return ds, list(SHAPES_CONCEPTS.names), list(SHAPES_CONCEPTS.categories)
    if not root:
        what = "the folder holding VOCdevkit" if source == "voc" else "the Broden folder holding index.csv"
        raise UserError(f"analysis.concepts={source} needs analysis.concepts_root=<{what}>.")
    if source == "voc":
        from ...data.voc import VOCSegmentationConcepts

        ds = VOCSegmentationConcepts(root, split or "val", image_size, transform=transform, mask_size=mask_size)
        return ds, list(ds.concepts), list(ds.categories)
    from ...data.broden import BrodenConcepts

    ds = BrodenConcepts(root, image_size, transform=transform, mask_size=mask_size, split=split)
    return ds, ds.concepts, ds.categories


@option_rules(**OPTION_RULES, concepts=one_of(("shapes", "voc", "broden")), image_size=at_least(1), step=at_least(0))
def run(
    ctx: AnalysisContext,
    *,
    concepts: str = "shapes",
    concepts_root: str | None = None,
    split: str | None = None,
    layers: list[str] | None = None,
    num_images: int | None = None,
    image_size: int | None = None,
    mask_size: int | None = None,
    quantile: float = 0.005,
    iou_threshold: float = 0.04,
    top_units: int = 12,
    step: int = 0,
) -> dict[str, Any]:
    """Dissect ``layers`` (None: every conv layer) on the ``concepts`` source (module docstring)."""
    if ctx.model is None:
        raise UserError("analysis=dissect needs ckpt=<checkpoint or run folder>.")
    size = int(image_size or ctx.data["image_size"])
    masks = int(mask_size or max(1, size // 2))
    dataset, names, categories = concept_dataset(concepts, concepts_root, split, ctx.data, size, masks)
    dataset = evenly_spaced_subset(dataset, num_images)
    layers = layers or conv_layer_names(ctx.model)
    results = figure.compute(
        ctx.model,
        dataset,
        layers,
        names,
        categories=categories,
        quantile=quantile,
        iou_threshold=iou_threshold,
        batch_size=ctx.batch_size,
        device=ctx.device,
        num_workers=ctx.num_workers,
    )
    images = f"{len(dataset)} {concepts} images at {size} px"
    for r in results.values():
        emit(ctx.sink, figure.draw(r, f"checkpoint {ctx.checkpoint}", images, top_units, source=concepts), step)
    ctx.sink.log_table("dissect/units", figure.unit_rows(results, source=concepts), step=step)
    return {layer: r.summary() for layer, r in results.items()}
