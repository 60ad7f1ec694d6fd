"""``analysis`` group (conf/analysis/*.yaml): the options of each offline analysis, i.e. the keyword arguments
of the function its ``_target_`` names (``_partial_: true``; ``tasks.analyze`` calls it with the context).
Layer names are checked against the checkpoint's model by :func:`zfnet_exp.schemas.check_layer_names`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .base import FieldError, at_least, dissect_options, maps_option, one_of

PREFIX = "zfnet_exp.tasks.analyses."
TRANSFORMS = ("translation", "scale", "rotation")
SCORES = ("logit", "prob")


@dataclass
class Analysis:
    _target_: str = ""
    _partial_: bool = True


@dataclass
class Top9(Analysis):
    layers: list[str] | None = None
    k: int = 9
    maps: Any = 8
    seed: int = 0
    maps_per_row: int = 3
    step: int = 0
    sanity: bool = False
    similarity: str = "ssim"

    def __post_init__(self) -> None:
        at_least(self, "k", 1)
        maps_option(self)
        at_least(self, "maps_per_row", 1)
        at_least(self, "step", 0)
        one_of(self, "similarity", ("ssim", "spearman"))


@dataclass
class Evolution(Analysis):
    ckpts: list[str] | None = None
    layers: list[str] | None = None
    maps: Any = 6
    images: str = "train"
    num_images: int = 256
    seed: int = 0
    step: int = 0

    def __post_init__(self) -> None:
        maps_option(self)
        at_least(self, "num_images", 1)
        at_least(self, "step", 0)


@dataclass
class Occlusion(Analysis):
    num_probes: int | None = 10
    patch: int = 16
    stride: int = 4
    fill: float = 0.0
    layer: str | None = "conv5"
    projection: bool = True

    def __post_init__(self) -> None:
        for name in ("num_probes", "patch", "stride"):
            at_least(self, name, 1)


@dataclass
class Invariance(Analysis):
    num_probes: int | None = 5
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORMS))
    layers: list[str] = field(default_factory=lambda: ["conv1", "fc7"])
    fill: float = 0.0
    amounts: dict[str, Any] | None = None  # {transform: [values]}

    def __post_init__(self) -> None:
        at_least(self, "num_probes", 1)
        one_of(self, "transforms", TRANSFORMS)
        ok = self.amounts is None or (
            not set(self.amounts) - set(TRANSFORMS)
            and all(
                v is None or (isinstance(v, list) and all(isinstance(x, int | float) for x in v))
                for v in self.amounts.values()
            )
        )
        if not ok:
            raise FieldError("amounts", self.amounts, f"a mapping of {', '.join(TRANSFORMS)} to lists of numbers")


@dataclass
class Correspondence(Analysis):
    cls: str = "arrow"
    parts: list[str] = field(default_factory=lambda: ["tip", "tail"])
    size: int = 12
    layers: list[str] = field(default_factory=lambda: ["conv5", "fc7"])
    subset_size: int = 5
    repeats: int = 10
    random_within_object: bool = True
    fill: float = 0.0
    max_images: int | None = None

    def __post_init__(self) -> None:
        for name in ("size", "subset_size", "repeats", "max_images"):
            at_least(self, name, 1)
        if not self.parts:
            raise FieldError("parts", self.parts, "at least one keypoint name, e.g. [tip, tail]")


@dataclass
class Dissect(Analysis):
    concepts: str = "shapes"
    concepts_root: str | None = None
    split: str | None = None
    layers: list[str] | None = None
    num_images: int | None = None
    image_size: int | None = None
    mask_size: int | None = None
    quantile: float = 0.005
    iou_threshold: float = 0.04
    top_units: int = 12
    step: int = 0

    def __post_init__(self) -> None:
        one_of(self, "concepts", ("shapes", "voc", "broden"))
        dissect_options(self)
        for name in ("num_images", "image_size", "mask_size"):
            at_least(self, name, 1)
        at_least(self, "top_units", 0)
        at_least(self, "step", 0)


def _methods(obj: Any) -> None:
    from ..tasks.analyses.faithfulness import method_choices

    one_of(obj, "methods", method_choices())


@dataclass
class _HeatMaps(Analysis):
    """Options shared by the analyses that compute heat maps (attribution methods and occlusion)."""

    methods: list[str] = field(default_factory=list)
    patch: int = 16
    stride: int = 4
    fill: float = 0.0
    occlusion_score: str = "logit"

    def __post_init__(self) -> None:
        at_least(self, "patch", 1)
        at_least(self, "stride", 1)
        one_of(self, "occlusion_score", SCORES)
        _methods(self)


@dataclass
class Attribution(_HeatMaps):
    num_probes: int | None = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        at_least(self, "num_probes", 1)


@dataclass
class Faithfulness(_HeatMaps):
    num_images: int | None = None
    metrics: list[str] = field(default_factory=lambda: ["deletion", "insertion", "pointing"])
    n_steps: int | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        from ..diagnostics.faithfulness import METRICS

        at_least(self, "num_images", 1)
        at_least(self, "n_steps", 1)
        at_least(self, "tolerance", 0)
        one_of(self, "metrics", METRICS)


SCHEMAS = {
    f"{PREFIX}{name}.run": schema
    for name, schema in (
        ("top9", Top9),
        ("evolution", Evolution),
        ("occlusion", Occlusion),
        ("invariance", Invariance),
        ("correspondence", Correspondence),
        ("attribution", Attribution),
        ("faithfulness", Faithfulness),
        ("dissect", Dissect),
    )
}
