"""The architecture as configuration (``model.arch``): presets, the paper's Fig. 6 first-layer swap in both
directions, added layers that train and show up in every diagnostic, a sweep grid, one-paragraph errors for
bad keys and geometries, and the model summary's FLOPs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import TINY_DATA, compose_train, run_entry_task
from omegaconf import OmegaConf
from torch import nn

from zfnet_exp.errors import ConfigError
from zfnet_exp.models import LitClassifier, build_model, list_models, preset_spec, spec_from_config
from zfnet_exp.schemas import validate_model


def _model_cfg(tmp_path, data_dir, *overrides):
    return compose_train([*overrides], tmp_path / "run", data_dir).model


def _arch(cfg_model) -> dict:
    return OmegaConf.to_container(cfg_model.arch, resolve=True)


def _shapes_and_params(arch: dict, size: int = 224) -> tuple[dict[str, int], int, nn.Module]:
    """Spatial size after every feature module and the parameter count, on the meta device (no memory)."""
    with torch.device("meta"):
        net = build_model(arch=arch, num_classes=1000, input_size=size, init=None)
        sizes, x = {}, torch.empty(1, 3, size, size)
        for name, module in net.features.named_children():
            x = module(x)
            sizes[name] = x.shape[-1]
    return sizes, sum(p.numel() for p in net.parameters()), net


def test_yaml_presets_are_the_registry_tables(tmp_path, data_dir):
    """Reference: the Python registry, whose parameter counts and sizes tests/test_models.py pins against
    hand counts; every conf/model/<preset>.yaml must describe exactly the same layer table."""
    for name in list_models():
        cfg = _model_cfg(tmp_path, data_dir, f"model={name}")
        assert cfg.name == name
        assert spec_from_config(_arch(cfg)) == preset_spec(name), name


def test_fig6_alexnet_first_layer_on_zfnet(tmp_path, data_dir):
    """Hand computation at 224 px: conv1 (224+2*1-11)//4+1 = 54, ceil-mode pool 27, conv2 (27-5)//2+1 = 12,
    pool 6, conv3-5 6, pool5 3; fc6 sees 256*3*3."""
    cfg = _model_cfg(tmp_path, data_dir, "model=zfnet", "model.arch.conv1.kernel=11", "model.arch.conv1.stride=4")
    sizes, params, net = _shapes_and_params(_arch(cfg))
    assert [sizes[k] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5", "pool5")] == [
        54,
        27,
        12,
        6,
        6,
        6,
        3,
    ]
    assert net.features.conv1.kernel_size == (11, 11) and net.features.conv1.stride == (4, 4)
    convs = (3 * 96 * 11 * 11 + 96) + (96 * 256 * 25 + 256) + (256 * 384 * 9 + 384) + (384 * 384 * 9 + 384)
    convs += 384 * 256 * 9 + 256
    fcs = (256 * 3 * 3 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert params == convs + fcs == 34_066_792


def test_fig6_zfnet_first_layer_on_alexnet(tmp_path, data_dir):
    """Reverse swap. Hand computation at 224 px: conv1 (224+2*2-7)//2+1 = 111, floor pool 55, conv2 (pad 2) 55,
    pool 27, conv3-5 27, pool5 13: the finer first layer keeps a 13x13 map, so fc6 sees 256*13*13."""
    cfg = _model_cfg(tmp_path, data_dir, "model=alexnet", "model.arch.conv1.kernel=7", "model.arch.conv1.stride=2")
    sizes, params, net = _shapes_and_params(_arch(cfg))
    assert [sizes[k] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv5", "pool5")] == [
        111,
        55,
        55,
        27,
        27,
        27,
        13,
    ]
    assert list(net.features.named_children())[1:4] == [
        ("relu1", net.features.relu1),
        ("norm1", net.features.norm1),  # AlexNet's order stays: LRN before pooling
        ("pool1", net.features.pool1),
    ]
    convs = (3 * 96 * 7 * 7 + 96) + (96 * 256 * 25 + 256) + (256 * 384 * 9 + 384) + (384 * 384 * 9 + 384)
    convs += 384 * 256 * 9 + 256
    fcs = (256 * 13 * 13 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 1000 + 1000)
    assert params == convs + fcs == 201_818_216


def test_sweep_composes_a_grid(tmp_path, data_dir):
    """``train.py -m model.arch.conv1.kernel=7,11 model.arch.conv1.stride=2,4``: Hydra's own sweeper splits
    the command line into jobs; each job composes and validates with its own first layer."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(["model.arch.conv1.kernel=7,11", "model.arch.conv1.stride=2,4"])
    (jobs,) = BasicSweeper.split_arguments(parsed, None)
    seen = set()
    for job in jobs:
        cfg = _model_cfg(tmp_path, data_dir, "data.image_size=224", *job)
        validate_model(cfg)
        seen.add((cfg.arch.conv1.kernel, cfg.arch.conv1.stride))
    assert seen == {(7, 2), (7, 4), (11, 2), (11, 4)}


BAD = [
    (["model.arch.conv1.kernel=0"], "model.arch.conv1.kernel=0 is out of range"),
    (["model.arch.conv1.kernel=abc"], "model.arch.conv1.kernel"),
    (["+model.arch.conv1.kernal=7"], "model.arch.conv1.kernal"),
    (["model.arch.conv1.norm.position=middle"], "model.arch.conv1.norm.position"),
    (["model.arch.conv2.pool.stride=0"], "model.arch.conv2.pool.stride=0 is out of range"),
    (["model.arch.conv3.padding=-1"], "model.arch.conv3.padding=-1 is out of range"),
    (["model.arch.fc6.dropout=1.5"], "model.arch.fc6.dropout=1.5 is out of range"),
    (["model.arch.fc6.units=0"], "model.arch.fc6.units=0 is out of range"),
    (["+model.arch.fc9={units: 10}"], "model.arch.fc9: hidden FC layers are numbered below 8"),
    (["+model.arch.pool6={units: 10}"], "model.arch.pool6: not a layer name"),
    (["+model.arch.conv6={kernel: 3}"], "model.arch.conv6.out_channels must be set"),
    (["+model.arch.conv6={out_channels: 8, kernel: 3, units: 4}"], "model.arch.conv6.units does not apply"),
    (["model.arch.conv1.kernel=11", "model.arch.conv1.stride=4"], "model.arch.conv5.pool: the 3x3 pooling after conv5"),
    (["model.arch.conv2.kernel=31"], "model.arch.conv2: conv2 (31x31 kernel"),
    (["model.library=keras"], "model.library='keras' is not valid: expected one of zfnet_exp, timm, torchvision"),
    (["model=timm", "model.name=resnet19"], "model.name='resnet19' is not a timm model. Close matches: resnet18"),
]


def test_bad_keys_and_geometries_name_the_key(tmp_path, data_dir):
    """Every bad value is one paragraph naming the full key, raised before anything is built (64 px input:
    ZF with AlexNet's 11x11/4 first layer runs out at pool5, 1x1 -> nothing)."""
    for overrides, message in BAD:
        cfg = _model_cfg(tmp_path, data_dir, "data.image_size=64", *overrides)
        with pytest.raises(ConfigError) as err:
            validate_model(cfg)
        assert message in str(err.value), (overrides, str(err.value))
        assert "\n" not in str(err.value)


def test_bad_architecture_exits_2_without_traceback(tmp_path):
    """A geometry that runs out before pool5 (AlexNet's first layer on ZF), through what ``python train.py`` runs
    once Hydra has composed the command line (in process: ``run_entry_task``)."""
    overrides = ["model.arch.conv1.kernel=11", "model.arch.conv1.stride=4", "logger=none"]
    code, err = run_entry_task("train", overrides, tmp_path / "run")
    assert code == 2, err[-2000:]
    assert "model.arch.conv5.pool" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.ckpt"))


def test_bad_added_layer_exits_2_without_traceback(tmp_path, data_dir):
    """An added layer with a value out of range, through what ``python train.py`` runs once Hydra has composed
    the command line (in process, as above): exit code 2, the key named on stderr, nothing trained."""
    overrides = ["+model.arch.fc7b={units: 64, dropout: 2}", "logger=none", f"paths.output_root={tmp_path}",
                 f"paths.data_dir={data_dir}"]  # fmt: skip
    code, err = run_entry_task("train", overrides, tmp_path / "run")
    assert code == 2, err[-2000:]
    assert "model.arch.fc7b.dropout=2" in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.fixture(scope="module")
def added_layers_run(tmp_path_factory, data_dir) -> Path:
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import train

    run_dir = tmp_path_factory.mktemp("added_layers")
    overrides = [
        "debug=smoke",
        *TINY_DATA,
        "logger=none",
        "~callbacks.train_samples",
        "+model.arch.conv6={out_channels: 32, kernel: 3, padding: 1}",
        "+model.arch.fc7b={units: 24}",
        "model.arch.fc6.units=64",
        "model.arch.fc7.units=48",
        "callbacks.top9.layers=[conv6,fc7b]",
        "callbacks.top9.maps=2",
        "callbacks.evolution.maps=2",
        "callbacks.filter_health.layers=[conv1,conv6,fc7b]",
        "callbacks.occlusion.num_probes=1",
    ]
    run_task(train, compose_train(overrides, run_dir, data_dir))
    return run_dir


def test_added_conv_and_fc_layers_train_and_are_diagnosed(added_layers_run):
    """conv6 continues the conv numbering after conv5 (found by the default layer discovery too: evolution,
    occlusion's last_conv), fc7b sits between fc7 and the classifier fc8. An FC layer has no receptive-field
    patch, so its top-9 figure is skipped (in one line); its health is logged like any layer's."""
    run = added_layers_run
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2
    state = ckpt["state_dict"]
    assert state["model.features.conv6.weight"].shape == (32, 256, 3, 3)
    linears = [k[: -len(".weight")] for k, v in state.items() if k.startswith("model.classifier.fc") and v.dim() == 2]
    assert linears == ["model.classifier.fc6", "model.classifier.fc7", "model.classifier.fc7b", "model.classifier.fc8"]
    assert (
        state["model.classifier.fc7b.weight"].shape == (24, 48) and state["model.classifier.fc8.weight"].shape[1] == 24
    )
    diag = run / "diagnostics" / "diag"
    for key in ("conv6/top9", "conv6/evolution"):
        assert list((diag / key).glob("*.png")) and list((diag / key).glob("*.json")), key
    top9 = json.loads(next((diag / "conv6" / "top9").glob("*.json")).read_text())
    assert top9["layer"] == "conv6"
    with (run / "metrics.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    for layer in ("conv6", "fc7b"):
        assert 0.0 <= float(row[f"health/{layer}/dead_frac"]) <= 1.0
    assert float(row["health/conv6/rms_mean"]) > 0  # the conv6 filters themselves
    (occ,) = list((diag / "occlusion").glob("*/*.json"))
    assert json.loads(occ.read_text())["layer"] == "conv6"  # last_conv = the added layer


def test_model_summary_shows_sizes_and_flops():
    """Lightning's summary runs ``example_input_array``: per-layer output sizes and FLOPs. Reference FLOPs:
    2 * MACs of every conv (Cout*Cin*k^2*H*W) and linear layer, from the hand-computed 64 px sizes
    (conv1 30, pool1 15, conv2 6, pool2 3, conv3-5 3, pool5 1)."""
    from lightning.pytorch.utilities.model_summary import ModelSummary

    lit = LitClassifier(name="zfnet_fc2048", num_classes=10, input_size=64, init=None)
    summary = ModelSummary(lit, max_depth=-1)
    sizes = dict(zip(summary.layer_names, summary.out_sizes))
    assert sizes["model.features.conv1"] == [1, 96, 30, 30] and sizes["model.features.pool5"] == [1, 256, 1, 1]
    convs = [(96, 3, 7, 30), (256, 96, 5, 6), (384, 256, 3, 3), (384, 384, 3, 3), (256, 384, 3, 3)]
    macs = sum(co * ci * k * k * h * h for co, ci, k, h in convs) + 256 * 2048 + 2048 * 2048 + 2048 * 10
    assert summary.total_flops == 2 * macs
