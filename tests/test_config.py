"""Every model x data x logger combination composes and resolves; bad choices fail at start, clearly."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
from conftest import CONF, ROOT, compose_train
from omegaconf import OmegaConf

from zfnet_exp.models import list_models

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA = ["shapes", "imagefolder data.root=/x", "imagenet data.root=/x"]
LOGGERS = sorted(p.stem for p in (CONF / "logger").glob("*.yaml"))


def test_config_groups_cover_the_registry():
    assert MODELS == list_models()
    assert LOGGERS == ["csv", "none", "tensorboard", "wandb"]


@pytest.mark.parametrize("logger", LOGGERS)
def test_every_model_and_data_composes(logger, tmp_path, data_dir):
    for model, data in itertools.product(MODELS, DATA):
        choice, *extra = data.split()
        cfg = compose_train(
            [f"model={model}", f"data={choice}", f"logger={logger}", *extra], tmp_path / "run", data_dir
        )
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["model"]["arch"] == model
        assert resolved["model"]["input_size"] == resolved["data"]["image_size"]
        assert resolved["run_name"] == f"{model}_{choice}"
        if logger == "none":
            assert not resolved.get("logger")


@pytest.mark.parametrize("experiment", ["zfnet_imagenet", "alexnet_imagenet"])
def test_paper_experiments_hold_the_paper_recipe(experiment, tmp_path, data_dir):
    cfg = compose_train([f"experiment={experiment}", "data.root=/imagenet"], tmp_path / "run", data_dir)
    opt = cfg.model.optimizer
    assert opt._target_ == "torch.optim.SGD" and opt.lr == 1e-2 and opt.momentum == 0.9 and opt.weight_decay == 5e-4
    assert cfg.model.scheduler._target_.endswith("ReduceLROnPlateau") and cfg.model.scheduler.factor == 0.1
    assert cfg.model.scheduler_monitor == "val/err_top1"
    assert cfg.data.batch_size == 128 and cfg.data.image_size == 224 and cfg.trainer.max_epochs == 70
    assert cfg.model.init == "paper" and cfg.data.normalization == "paper"
    assert cfg.callbacks.filter_renorm.radius == 0.1
    assert cfg.model.arch == experiment.split("_")[0]


def _run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_unknown_model_lists_choices():
    r = _run("model=nope")
    assert r.returncode != 0
    assert "Could not find 'model/nope'" in r.stderr and "zfnet_wide345" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_dataset_folder_is_one_clear_paragraph(tmp_path):
    r = _run("data=imagefolder", "data.root=/does/not/exist", "logger=none", f"paths.output_root={tmp_path}")
    assert r.returncode == 2
    assert "Dataset folder /does/not/exist does not exist" in r.stderr and "ROOT/train/<class>" in r.stderr
    assert "Traceback" not in r.stderr


def test_unknown_option_value_lists_choices(tmp_path):
    r = _run("model.init=xavier", "logger=none", f"paths.output_root={tmp_path}")
    assert r.returncode == 2 and "model.init='xavier' is not valid" in r.stderr and "kaiming" in r.stderr
    assert "Traceback" not in r.stderr
