"""Config validation by schema (``zfnet_exp.schemas``): every group of the composed ``train`` and ``analyze``
configs rejects a wrong value at start with one paragraph that names the full key (exit code 2 through the
task runner), and accepts every shipped config. In-process: the checks run before anything is built, so
each case costs a config copy, not a training run."""

from __future__ import annotations

import pytest
from helpers import CONF, compose_train
from omegaconf import OmegaConf, open_dict

from zfnet_exp.errors import ConfigError
from zfnet_exp.schemas import check_layer_names, validate_config
from zfnet_exp.tasks.runner import run_task
from zfnet_exp.tasks.train import train

ANALYSES = sorted(p.stem for p in (CONF / "analysis").glob("*.yaml"))

# (group option, key, wrong value, words the message must hold besides the key): at least one per group and
# per callback / logger node of the shipped configs; types (a non-number), ranges (a negative size), choices
TRAIN_CASES = [
    ("", "seed", "abc", "an integer"),
    ("", "paths.data_dir", ["a", "b"], "a string"),
    ("", "data.batch_size", -1, ">= 1"),
    ("", "data.image_size", "big", "an integer"),
    ("", "data.normalization", "zca", "one of paper, standard"),
    ("", "data.mean", [0.5, 0.5], "three per-channel values"),
    ("", "data.train_per_class", 0, ">= 1"),
    ("data=imagefolder", "data.root", "???", "must be set"),
    ("data=imagenet data.root=/x", "data.num_classes", 1, ">= 2"),
    ("", "model.init", "xavier", "paper, kaiming"),
    ("", "model.arch.conv1.kernel", 0, ">= 1"),
    ("", "model.label_smoothing", 1.5, "[0.0, 1.0]"),
    ("", "model.optimizer", {"lr": 0.1}, "_target_"),
    ("", "trainer.max_epochs", 0, ">= 1"),
    ("", "trainer.precision", "8-bit", "32-true"),
    ("", "trainer.limit_train_batches", 2.5, "fraction"),
    ("", "callbacks.model_checkpoint.mode", "best", "one of min, max"),
    ("", "callbacks.filter_renorm.radius", -0.1, "positive"),
    ("", "callbacks.grad_centralization.enabled", "sometimes", "boolean"),
    ("", "callbacks.lr_monitor.logging_interval", "hour", "one of step, epoch"),
    ("", "callbacks.train_samples.num_images", 0, ">= 1"),
    ("", "callbacks.top9.maps", "some", "all"),
    ("", "callbacks.top9.layer", ["conv1"], "not an option of callbacks.top9"),  # a typo of `layers`
    ("", "callbacks.evolution.epochs", [0, 2], ">= 1"),
    ("", "callbacks.filter_health.every_n_epochs", 0, ">= 1"),
    ("", "callbacks.occlusion.patch", "big", "an integer"),
    ("logger=wandb", "logger.wandb.offline", "maybe", "boolean"),
    ("logger=csv", "logger.csv.prefix", ["x"], "a string"),
    ("logger=tensorboard", "logger.tensorboard.default_hp_metric", "x", "boolean"),
]

LAYER_CASES = [  # names a 5-conv model lacks; resolved on the model's structure before any data is read
    ("callbacks.top9.layers", ["conv1", "conv9"]),
    ("callbacks.evolution.layers", ["fc9"]),
    ("callbacks.filter_health.layers", ["features.nope"]),
    ("callbacks.filter_renorm.layers", ["conv6"]),
    ("callbacks.occlusion.layer", "conv0"),
]

ANALYZE_CASES = [
    ("top9", "analysis.similarity", "cosine", "one of ssim, spearman"),
    ("evolution", "analysis.num_images", 0, ">= 1"),
    ("occlusion", "analysis.stride", 0, ">= 1"),
    ("invariance", "analysis.transforms", ["shear"], "translation"),
    ("correspondence", "analysis.size", "big", "an integer"),
    ("attribution", "analysis.methods", ["lime"], "gradcam"),
    ("faithfulness", "analysis.metrics", ["auc"], "deletion"),
    ("top9", "device", "tpu", "cuda"),
    ("top9", "num_images", -3, ">= 1"),
]


@pytest.fixture(scope="module")
def train_cfgs(tmp_path_factory, data_dir):
    """One composition per group option the cases use (composing is the slow part)."""
    options = sorted({c[0] for c in TRAIN_CASES} | {""})
    run = tmp_path_factory.mktemp("run")
    return {o: compose_train(["debug=smoke", "logger=none", *o.split()], run, data_dir) for o in options}


@pytest.fixture(scope="module")
def analyze_cfgs(tmp_path_factory):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    out = tmp_path_factory.mktemp("analysis")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return {
            a: compose("analyze", overrides=[f"analysis={a}", "ckpt=x.ckpt", f"paths.output_dir={out}", "logger=none"])
            for a in ANALYSES
        }


@pytest.fixture(scope="module")
def network():
    from zfnet_exp.models import create_model

    return create_model("zfnet", num_classes=10, input_size=64)


def _with(cfg, key: str, value):
    cfg = cfg.copy()
    with open_dict(cfg):
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def _fails_with_exit_2(cfg, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run_task(train, cfg)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err  # one paragraph
    return err


def test_shipped_train_configs_pass(train_cfgs):
    """Positive control: the configs the project ships validate (else every case below would pass vacuously)."""
    for option, cfg in train_cfgs.items():
        if option != "data=imagefolder":  # composed without its mandatory data.root, for the case below
            validate_config(cfg)


@pytest.mark.parametrize(("option", "key", "value", "words"), TRAIN_CASES, ids=[c[1] for c in TRAIN_CASES])
def test_wrong_train_value_is_one_paragraph_exit_2(train_cfgs, capsys, option, key, value, words):
    err = _fails_with_exit_2(_with(train_cfgs[option], key, value), capsys)
    assert key in err and words in err, err


@pytest.mark.parametrize(("key", "value"), LAYER_CASES, ids=[c[0] for c in LAYER_CASES])
def test_wrong_layer_name_in_any_callback_fails_at_start(train_cfgs, capsys, key, value):
    """Reference for the valid names: the model's own ``features.reluN`` / ``classifier.reluN`` modules."""
    err = _fails_with_exit_2(_with(train_cfgs[""], key, value), capsys)
    assert err.startswith(f"error: {key}=") and "conv1, conv2, conv3, conv4, conv5, fc6, fc7" in err, err


def test_disabled_callback_layer_names_are_not_checked(train_cfgs, network):
    """``enabled: false`` means the callback is not built, so its options cannot fail the run."""
    cfg = _with(_with(train_cfgs[""], "callbacks.top9.layers", ["conv9"]), "callbacks.top9.enabled", False)
    check_layer_names(cfg, network)


def test_broken_interpolation_is_one_paragraph_exit_2(train_cfgs, capsys):
    """OmegaConf's own errors (here a reference to a key that does not exist) name the key, exit code 2."""
    err = _fails_with_exit_2(_with(train_cfgs[""], "data.cache_dir", "${paths.nope}"), capsys)
    assert "data.cache_dir" in err and "paths.nope" in err, err


@pytest.mark.parametrize("analysis", ANALYSES)
def test_shipped_analysis_configs_pass(analysis, analyze_cfgs):
    validate_config(analyze_cfgs[analysis])


@pytest.mark.parametrize(
    ("analysis", "key", "value", "words"), ANALYZE_CASES, ids=[f"{c[0]}-{c[1]}" for c in ANALYZE_CASES]
)
def test_wrong_analysis_value_names_the_key(analyze_cfgs, analysis, key, value, words):
    with pytest.raises(ConfigError) as e:
        validate_config(_with(analyze_cfgs[analysis], key, value))
    assert str(e.value).startswith(f"{key}=") and words in str(e.value), str(e.value)


@pytest.mark.parametrize(
    ("analysis", "key", "value"),
    [
        ("top9", "analysis.layers", ["conv9"]),
        ("evolution", "analysis.layers", ["conv2", "fc9"]),
        ("occlusion", "analysis.layer", "conv7"),
        ("invariance", "analysis.layers", ["conv1", "fc8x"]),
        ("correspondence", "analysis.layers", ["pool5"]),
    ],
)
def test_wrong_analysis_layer_name_names_the_key(analyze_cfgs, network, analysis, key, value):
    cfg = analyze_cfgs[analysis]
    check_layer_names(cfg, network)  # the shipped names are valid
    with pytest.raises(ConfigError, match=rf"^{key}=.*not found"):
        check_layer_names(_with(cfg, key, value), network)


def test_enabled_is_read_by_the_instantiator_not_the_class(train_cfgs):
    """One way to switch a callback off: ``enabled: false`` on its node. Reference: the config's own list
    of enabled nodes; the classes themselves take no ``enabled`` argument."""
    import inspect

    from hydra.utils import get_class

    from zfnet_exp.utils.instantiators import instantiate_group

    cfg = _with(train_cfgs[""], "callbacks.top9.enabled", False)
    with open_dict(cfg):
        cfg.callbacks.model_checkpoint.dirpath = None
    built = instantiate_group(cfg.callbacks, "callbacks")
    expected = [n.split(".")[-1] for n in (node._target_ for node in cfg.callbacks.values() if node.enabled)]
    assert [type(cb).__name__ for cb in built] == [
        get_class(cfg.callbacks[name]._target_).__name__ for name in cfg.callbacks if cfg.callbacks[name].enabled
    ]
    assert "Top9Deconv" not in [type(cb).__name__ for cb in built] and len(built) == len(expected)
    for node in cfg.callbacks.values():
        assert "enabled" not in inspect.signature(get_class(node._target_)).parameters


def test_recipe_switch_of_an_unselected_callback_builds_nothing(tmp_path, data_dir):
    """``callbacks=none`` with the default recipe: the recipe's ``callbacks.grad_centralization.enabled``
    is the only thing under ``callbacks``; it validates and builds no object (as before the recipe set it)."""
    from zfnet_exp.utils.instantiators import instantiate_group

    cfg = compose_train(["callbacks=none", "logger=none"], tmp_path / "run", data_dir)
    assert OmegaConf.to_container(cfg.callbacks) == {"grad_centralization": {"enabled": True}}
    validate_config(cfg)
    assert instantiate_group(cfg.callbacks, "callbacks") == []
