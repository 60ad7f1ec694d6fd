"""Every model, data and logger choice composes and resolves with every other (all pairs of choices); bad
choices fail at start, clearly."""

from __future__ import annotations

import itertools

import pytest
from helpers import CONF, compose_train, run_entry_task
from omegaconf import OmegaConf

from zfnet_exp.models import list_models

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml") if p.stem not in ("timm", "torchvision"))
DATA = ["shapes", "imagefolder data.root=/x", "imagenet data.root=/x"]
LOGGERS = sorted(p.stem for p in (CONF / "logger").glob("*.yaml"))


def test_config_groups_cover_the_registry():
    assert MODELS == list_models()
    assert LOGGERS == ["csv", "none", "tensorboard", "wandb"]


def _pairwise(logger: str) -> list[tuple[str, str]]:
    """The model x data choices composed with ``logger``: every model once, its data option rotating with the
    logger (model i, logger j: data (i + j) mod 3), so that the four loggers together compose every model with
    every data option, every model with every logger and every data option with every logger."""
    j = LOGGERS.index(logger)
    return [(model, DATA[(i + j) % len(DATA)]) for i, model in enumerate(MODELS)]


def test_pairwise_choices_cover_every_pair():
    """The design above against the full product (``itertools.product``): no pair of choices is left out."""
    composed = {(logger, model, data) for logger in LOGGERS for model, data in _pairwise(logger)}
    assert {(m, d) for _, m, d in composed} == set(itertools.product(MODELS, DATA))
    assert {(lg, m) for lg, m, _ in composed} == set(itertools.product(LOGGERS, MODELS))
    assert {(lg, d) for lg, _, d in composed} == set(itertools.product(LOGGERS, DATA))


@pytest.mark.parametrize("logger", LOGGERS)
def test_every_model_and_data_composes(logger, tmp_path, data_dir):
    """Each model with ``logger`` (and, over the four loggers, with every data option: :func:`_pairwise`): the
    groups merge independently, and the values that cross them (``model.input_size`` from ``data.image_size``,
    ``run_name`` from the model and data choices) are checked on every composed config, resolved."""
    for model, data in _pairwise(logger):
        choice, *extra = data.split()
        cfg = compose_train(
            [f"model={model}", f"data={choice}", f"logger={logger}", *extra], tmp_path / "run", data_dir
        )
        resolved = OmegaConf.to_container(cfg, resolve=True)
        assert resolved["model"]["name"] == model
        assert resolved["model"]["input_size"] == resolved["data"]["image_size"]
        assert resolved["run_name"] == f"{model}_{choice}"
        if logger == "none":
            assert not resolved.get("logger")
        else:
            assert list(resolved["logger"]) == [logger]


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
    assert cfg.model.name == experiment.split("_")[0]


def test_missing_dataset_folder_is_one_clear_paragraph(tmp_path):
    """What ``python train.py data=imagefolder data.root=<missing>`` runs, in process (``run_entry_task``)."""
    code, err = run_entry_task(
        "train", ["data=imagefolder", "data.root=/does/not/exist", "logger=none", f"paths.output_root={tmp_path}"],
        tmp_path / "run",
    )  # fmt: skip
    assert code == 2
    assert "Dataset folder /does/not/exist does not exist" in err and "data.root=<path>" in err
    assert "├── train/" in err  # the expected tree
    assert "└── val/" in err  # the expected layout is drawn
    assert "Traceback" not in err


# What `recipe=fast` / `recipe=paper` resolved to before the recipe became a `# @package _global_` config
# (composed from main at 8a70b03, when model/data/trainer/callbacks read `${recipe.*}`). The full resolved
# model/data/trainer/callbacks groups of fast, paper, both paper experiments and debug=smoke were compared once
# at the change and were identical; these are the values the recipes own. Issue 10 added the first-layer settings
# (model.first_conv, gradient centralization without conv1: README "Default recipe" has their measurements).
RECIPE_REFERENCE = {
    "fast": {
        "model.init": "kaiming",
        "model.zero_head": True,
        "model.label_smoothing": 0.0,
        "model.optimizer": {"_partial_": True, "_target_": "torch.optim.AdamW", "lr": 0.0003, "weight_decay": 0.0005},
        "model.scheduler": {
            "_partial_": True,
            "_target_": "zfnet_exp.models.schedules.warmup_cosine",
            "final_lr_frac": 0.01,
            "warmup_frac": 0.05,
        },
        "model.scheduler_interval": "step",
        "model.scheduler_monitor": None,
        "data.normalization": "standard",
        "data.mean_image": False,
        "trainer.max_epochs": 12,
        "trainer.gradient_clip_val": 2.0,
        "callbacks.grad_centralization.enabled": True,
        "callbacks.grad_centralization.skip_first_conv": True,
        "callbacks.filter_renorm.radius": 0.1,
        "model.first_conv": {"init_std": 0.01, "lr_scale": 1.0, "weight_decay": 10.0},
    },
    "paper": {
        "model.init": "paper",
        "model.zero_head": False,
        "model.label_smoothing": 0.0,
        "model.optimizer": {
            "_partial_": True,
            "_target_": "torch.optim.SGD",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 0.0005,
        },
        "model.scheduler": {
            "_partial_": True,
            "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
            "factor": 0.1,
            "mode": "min",
            "patience": 3,
        },
        "model.scheduler_interval": "epoch",
        "model.scheduler_monitor": "val/err_top1",
        "data.normalization": "paper",
        "data.mean_image": True,
        "trainer.max_epochs": 70,
        "trainer.gradient_clip_val": None,
        "callbacks.grad_centralization.enabled": False,
        "callbacks.filter_renorm.radius": 0.1,
        "model.first_conv": {"init_std": None, "lr_scale": 1.0, "weight_decay": None},  # every layer N(0, 0.01^2)
    },
}


@pytest.mark.parametrize("recipe", ["fast", "paper"])
def test_recipe_sets_the_values_it_owns(recipe, tmp_path, data_dir):
    """Reference: the values each recipe produced as an interpolation bag (RECIPE_REFERENCE above). The recipe
    now writes them into model/data/trainer/callbacks itself, and a command-line override still wins."""
    cfg = compose_train([f"recipe={recipe}", "logger=none"], tmp_path / "run", data_dir)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    got = {key: OmegaConf.select(OmegaConf.create(resolved), key) for key in RECIPE_REFERENCE[recipe]}
    got = {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in got.items()}
    assert got == RECIPE_REFERENCE[recipe]
    assert "recipe" not in resolved  # nothing reads ${recipe.*} any more
    cfg = compose_train([f"recipe={recipe}", "logger=none", "trainer.max_epochs=3"], tmp_path / "run", data_dir)
    assert cfg.trainer.max_epochs == 3


def test_group_configs_read_on_their_own(tmp_path, data_dir):
    """A model/data/trainer/callbacks file holds values, not ${recipe.*} references: composed without any
    recipe, every group resolves, and the values are the file's own (the default recipe's)."""
    for path in [*CONF.glob("model/**/*.yaml"), *CONF.glob("data/*.yaml"), *CONF.glob("trainer/*.yaml")]:
        assert "${recipe." not in path.read_text(), path
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    fast = RECIPE_REFERENCE["fast"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for group, option in (
            ("model", "zfnet"),
            ("model", "alexnet_no34"),
            ("data", "shapes"),
            ("trainer", "default"),
        ):
            alone = OmegaConf.to_container(compose(f"{group}/{option}")[group])  # this file and its own defaults
            for key, value in fast.items():
                if key.startswith(f"{group}."):
                    assert alone[key.split(".", 1)[1]] == value, (option, key)


def test_wrong_layer_name_fails_before_any_data_is_read(tmp_path):
    """The new user's command of issue 8: it trained a whole epoch, then died in a 77-line traceback. Now one
    paragraph and exit code 2 before the dataset is even generated (the layer names are resolved on the
    model's structure), so the fresh data folder stays empty. In process (``run_entry_task``: what the script runs
    once Hydra has composed the command line)."""
    code, err = run_entry_task(
        "train",
        ["callbacks.top9.layers=[conv9]", "debug=smoke", "logger=none", f"paths.data_dir={tmp_path}/data"],
        tmp_path / "run",
    )
    assert code == 2, err[-2000:]
    msg = err.strip()
    assert msg.startswith("error: callbacks.top9.layers=[conv9]:") and "conv5" in msg and "fc7" in msg
    assert "Traceback" not in err and "\n\n" not in msg  # one paragraph
    assert not list((tmp_path / "data").glob("*"))


def test_sweep_folder_resolves_before_hydra_config_is_set():
    """`python train.py -m seed=1,2` (no experiment): Hydra's basic sweeper reads hydra.sweep.dir from the composed
    config before it sets HydraConfig, so the folder name may not use the ${hydra:...} resolver (it did through
    ${run_name}, and every plain multirun failed with "HydraConfig was not set"). Reference: what BasicSweeper.sweep
    does, resolving the node on the composed config with HydraConfig cleared."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["seed=1"], return_hydra_config=True)
    folder = str(cfg.hydra.sweep.dir)
    assert folder.endswith("_zfnet_shapes") and "/train/multirun/" in folder
