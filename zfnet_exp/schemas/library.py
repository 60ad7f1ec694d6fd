"""Rules for the library classes our configs build (Lightning's ``Trainer``, callbacks and loggers): their options
(names, types, defaults) come from their own signatures (:mod:`.signature`); what those types cannot say is
declared here, keyed by the class itself, so a subclass (``zfnet_exp.callbacks.checkpoint.RunCheckpoint``) keeps
its parent's rules. Our own classes declare their rules where they are defined
(:func:`zfnet_exp.utils.options.option_rules`)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

from ..utils.options import FieldError, at_least, number_or_fraction, one_of

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")


def _trainer(t: Any) -> None:
    if t.max_epochs is not None and t.max_epochs != -1 and t.max_epochs < 1:
        raise FieldError("max_epochs", t.max_epochs, "a number of epochs >= 1 (or -1: no limit)")
    devices = t.devices
    if not (devices == "auto" or isinstance(devices, list) or (isinstance(devices, int) and devices >= -1)):
        if not (isinstance(devices, str) and devices.replace(",", "").strip().isdigit()):
            raise FieldError("devices", devices, "a number of devices (>= 1; -1: all), auto, or a list of ids")
    if t.deterministic not in (None, True, False, "warn"):
        raise FieldError("deterministic", t.deterministic, "true, false or warn")


_BATCHES = {
    name: number_or_fraction
    for name in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches")
}
_BATCHES["overfit_batches"] = number_or_fraction

LIBRARY_RULES: dict[type, tuple[dict, tuple]] = {
    Trainer: (
        {
            "accelerator": one_of(ACCELERATORS),
            "num_nodes": at_least(1),
            "max_steps": at_least(-1),
            "gradient_clip_val": at_least(0),
            "accumulate_grad_batches": at_least(1),
            "check_val_every_n_epoch": at_least(1),
            "log_every_n_steps": at_least(1),
            "num_sanity_val_steps": at_least(-1),
            **_BATCHES,
        },
        (_trainer,),
    ),
    ModelCheckpoint: (
        {"mode": one_of(("min", "max")), "save_top_k": at_least(-1), "every_n_epochs": at_least(0)},
        (),
    ),
    LearningRateMonitor: ({"logging_interval": one_of(("step", "epoch"))}, ()),
}
