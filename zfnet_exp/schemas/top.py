"""The top-level keys of each entry point's config (``train.yaml``, ``analyze.yaml``, ``eval.yaml``,
``transfer.yaml``), the ``transfer`` node and the ``paths`` group: options of a task, not of an object, so their
schema is a dataclass here. Their values are written once, in the YAML file (every key a user may override
must exist there); the dataclass declares what the YAML cannot: the type and the valid range of each key, and
which keys exist at all (``+foo=1`` is refused with the closest valid key). The config groups composed into a
task's config (``data``, ``model``, ...) are fields of type ``Any`` here and checked on their own."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from omegaconf import MISSING, OmegaConf

from ..utils.options import FieldError, Rule, at_least, greater_than, one_of

MODES = ("features", "finetune", "scratch")  # transfer.mode
CLASSIFIERS = ("softmax", "svm")  # transfer.classifier


def apply(options: Any, rules: dict[str, Rule]) -> None:
    """Run per-key ``rules`` on a dataclass instance (its ``__post_init__``)."""
    for name, rule in rules.items():
        expected = rule(getattr(options, name))
        if expected is not None:
            raise FieldError(name, getattr(options, name), expected)


def device(value: Any) -> str | None:
    base, _, index = str(value).partition(":")
    ok = base in ("auto", "cpu", "cuda", "mps") and (not index or index.isdigit())
    return None if ok else "auto, cpu, cuda or cuda:<index>"


def _progress(value: Any) -> str | None:
    ok = isinstance(value, dict) and set(value) <= {"plain", "every_n_steps"}
    ok = ok and value.get("plain", "auto") in ("auto", True, False)
    ok = ok and isinstance(value.get("every_n_steps", 1), int) and value.get("every_n_steps", 1) >= 1
    return None if ok else "{plain: auto | true | false, every_n_steps: N >= 1}"


def group_keys(schema: type) -> set[str]:
    """The fields of a top-level schema that are config groups (checked on their own)."""
    return {f.name for f in fields(schema) if f.metadata.get("group")}


def _group() -> Any:
    return field(default=None, metadata={"group": True})


@dataclass
class Paths:
    root_dir: str = MISSING
    data_dir: str = MISSING
    output_root: str = MISSING
    output_dir: str = MISSING


@dataclass
class _TaskTop:
    """The keys every entry point's config has; ``RULES``: the per-key rules of a class and its parents."""

    RULES: ClassVar[dict[str, Rule]] = {}
    task_name: str = MISSING
    run_name: str | None = MISSING
    tags: list[str] = MISSING
    logger: Any = _group()
    paths: Any = _group()

    def __post_init__(self) -> None:
        apply(self, self.RULES)


@dataclass
class TrainTop(_TaskTop):
    RULES: ClassVar[dict[str, Rule]] = {"progress": _progress}
    seed: int | None = MISSING
    ckpt_path: str | None = MISSING
    optimized_metric: str | None = MISSING  # returned by train.py's main for Hydra sweepers
    auto_resume: bool = MISSING
    group: str | None = MISSING
    progress: Any = MISSING
    data: Any = _group()
    model: Any = _group()
    callbacks: Any = _group()
    trainer: Any = _group()


@dataclass
class _OfflineTop(_TaskTop):
    """The keys of the tasks that read a checkpoint (analyze, eval, transfer)."""

    RULES: ClassVar[dict[str, Rule]] = {"batch_size": at_least(1), "num_workers": at_least(0), "device": device}
    batch_size: int = MISSING
    num_workers: int = MISSING
    device: str = MISSING


@dataclass
class AnalyzeTop(_OfflineTop):
    RULES: ClassVar[dict[str, Rule]] = {**_OfflineTop.RULES, "num_images": at_least(1)}
    ckpt: str = MISSING
    images: str | None = MISSING
    num_images: int | None = MISSING
    seed: int = MISSING
    analysis: Any = _group()


@dataclass
class EvalTop(_OfflineTop):
    RULES: ClassVar[dict[str, Rule]] = {
        **_OfflineTop.RULES,
        "split": one_of(("val", "train")),
        "num_images": at_least(1),
    }
    ckpt: Any = MISSING  # a checkpoint file or run folder, or a list of them (an ensemble)
    split: str = MISSING
    num_images: int | None = MISSING
    progress: bool = MISSING
    data: Any = _group()

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.ckpt, list) and not self.ckpt:
            raise FieldError("ckpt", self.ckpt, "a checkpoint file or run folder, or a list of them (an ensemble)")


@dataclass
class TransferTop(_OfflineTop):
    ckpt: str | None = MISSING  # transfer.mode=scratch: may be null
    transfer: Any = _group()
    data: Any = _group()


def _per_class(value: Any) -> str | None:
    items = value if isinstance(value, list) else [value]
    ok = items and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in items)
    return None if ok else "one or more numbers >= 1 (e.g. 30 or [5,10,15,30])"


@dataclass
class Transfer:
    """``transfer.*`` of ``transfer.yaml`` (README "Transfer")."""

    mode: str = MISSING
    layer: int = MISSING
    grid: int = MISSING
    classifier: str = MISSING
    C: float = MISSING
    max_iter: int = MISSING
    blas_threads: int | None = MISSING
    per_class: Any = MISSING  # N, or a list of N (Fig. 9)
    splits: int = MISSING
    seed: int = MISSING
    cache_dir: str | None = MISSING
    arch: str = MISSING
    epochs: int = MISSING
    lr: float = MISSING
    finetune_lr_mult: float = MISSING
    weight_decay: float = MISSING
    train_batch_size: int = MISSING

    def __post_init__(self) -> None:
        apply(
            self,
            {
                "mode": one_of(MODES),
                "classifier": one_of(CLASSIFIERS),
                "per_class": _per_class,
                "splits": at_least(1),
                "C": greater_than(0),
                "grid": greater_than(0),
                "epochs": greater_than(0),
                "lr": greater_than(0),
                "max_iter": at_least(1),
                "blas_threads": at_least(1),
                "finetune_lr_mult": at_least(0),
                "weight_decay": at_least(0),
                "train_batch_size": at_least(1),
            },
        )
        from ..diagnostics.features import PAPER_LAYERS  # here: the schemas are read before torch is imported

        if self.mode == "features" and self.layer not in PAPER_LAYERS:
            raise FieldError("layer", self.layer, "one of the paper's layers 1..7 (1-5 conv, 6-7 fc)")
        if self.mode != "features" and self.classifier == "svm":
            raise FieldError(
                "classifier",
                "svm",
                f"softmax: transfer.mode={self.mode} trains the network with its softmax (svm needs "
                f"transfer.mode=features)",
            )


def per_class_counts(transfer: Any) -> list[int]:
    """``transfer.per_class`` (N or a list of N, validated at start) as a list of ints."""
    value = transfer.per_class
    return [int(n) for n in value] if isinstance(value, list | tuple) or OmegaConf.is_list(value) else [int(value)]
