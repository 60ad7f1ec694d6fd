"""Mistakes Hydra finds while it composes the config (before any task code runs) end like every other config
error: one paragraph on stderr that names the key or option and the fix, exit code 2, no traceback.

Reference for the suggestions: the config tree itself (the keys of the node and the files of the group, listed
independently here from ``conf/`` and the composed config) and ``difflib``'s closest match."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import CONF, ROOT

from zfnet_exp.errors import ConfigError
from zfnet_exp.tasks.entry import check_composition


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args, "logger=none"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _one_paragraph(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr[-2000:]
    msg = r.stderr.strip()
    assert msg.startswith("error: ") and "\n" not in msg, msg  # one paragraph, nothing else on stderr
    assert "Traceback" not in r.stderr and "HYDRA_FULL_ERROR" not in r.stderr
    return msg


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    ("script", "args", "named", "suggested"),
    [
        # a misspelt key of an untyped node, of a layer of the table, and of an entry point's own node
        ("train.py", ["trainer.max_epoch=3"], "trainer.max_epoch", "trainer.max_epochs=3"),
        ("eval.py", ["ckpt=x", "data.image_sise=64"], "data.image_sise", "data.image_size=64"),
        ("transfer.py", ["ckpt=x", "transfer.layr=5"], "transfer.layr", "transfer.layer=5"),
        # an unknown group option: every option of the group is listed
        ("train.py", ["model=zfnett"], "model=zfnett", "model=zfnet"),
        ("analyze.py", ["ckpt=x", "analysis=occlusn"], "analysis=occlusn", "analysis=occlusion"),
        # a wrong type for an option of the model (checked at start against LitClassifier's signature)
        ("train.py", ["model.init_std=abc"], "model.init_std='abc'", "expected a number"),
    ],
)
def test_composition_error_is_one_paragraph_exit_2(script, args, named, suggested):
    msg = _one_paragraph(_run(script, *args))
    assert named in msg and suggested in msg, msg
    if "=" in named and "." not in named.split("=")[0]:  # a group option: all of the group's files are listed
        group = named.split("=")[0]
        assert all(option in msg for option in _options(group)), msg


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("train.py", ["model=zfnett"]),
        ("analyze.py", ["ckpt=x", "analysis=occlusn"]),
        ("eval.py", ["ckpt=x", "data.image_sise=64"]),
        ("transfer.py", ["ckpt=x", "transfer.layr=5"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_composition_error_is_answered_before_the_task_is_imported(script, args):
    """The entry points check the command line before they import their task: a typo is answered without
    importing torch or Lightning (seconds). Reference: Python's own import log (``-X importtime``)."""
    r = subprocess.run(
        [sys.executable, "-X", "importtime", script, *args, "logger=none"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and f"error: {args[-1].split('=')[0]}" in r.stderr, r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "hydra" in imported and "zfnet_exp.tasks.entry" in imported, sorted(imported)[:20]  # the log is read
    assert not imported & {"torch", "lightning", f"zfnet_exp.tasks.{script.removesuffix('.py')}"}


def test_misspelt_layer_field_names_the_layer_fields():
    """``model.arch.conv1.kernal=5``: the layer's own fields (from the composed zfnet table) are listed."""
    with pytest.raises(ConfigError) as e:
        check_composition(CONF, "train", ["model.arch.conv1.kernal=5"])
    msg = str(e.value)
    assert "model.arch.conv1.kernal is not a config key" in msg and "model.arch.conv1.kernel=5" in msg
    assert all(f in msg for f in ("out_channels", "kernel", "stride", "padding", "pool", "norm"))


def test_misspelt_top_level_key_and_typed_node():
    """A misspelt group name suggests the group; a key the model's class does not take cannot be added with
    ``+`` (the check at start refuses it), so ``+`` is not offered there."""
    with pytest.raises(ConfigError) as e:
        check_composition(CONF, "train", ["traner.max_epochs=2"])
    assert "Did you mean trainer?" in str(e.value) and "trainer.max_epochs=2" in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_composition(CONF, "train", ["model.init_sdt=0.1"])
    assert "model.init_std=0.1" in str(e.value) and "+model" not in str(e.value)


def test_list_group_option_and_nested_group():
    with pytest.raises(ConfigError) as e:
        check_composition(CONF, "train", ["callbacks=[top9,evolutin]"])
    assert "callbacks=evolutin" in str(e.value) and "callbacks=evolution" in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_composition(CONF, "train", ["model/optimizer=adamm"])
    assert all(o in str(e.value) for o in _options("model/optimizer"))


def test_every_value_of_a_sweep_is_checked():
    """``-m``: a bad value anywhere in a sweep (a composition error, or a value the start-up check refuses) is found
    before anything is launched; a valid grid passes."""
    with pytest.raises(ConfigError, match="data=imgnet"):
        check_composition(CONF, "train", ["-m", "data=shapes,imgnet", "seed=1,2"])
    with pytest.raises(ConfigError, match="model.init_std=abc"):
        check_composition(CONF, "train", ["-m", "seed=1,2", "model.init_std=0.01,abc"])
    check_composition(
        CONF, "train", ["-m", "model.arch.conv1.kernel=7,11", "model.arch.conv1.stride=2,4", "data.image_size=224"]
    )
    # each job also goes through the check the task runs at start: AlexNet's stride 4 leaves nothing after pool5
    # at 64 px (the reference: the same job refused by validate_config, test_architectures.py's BAD table)
    with pytest.raises(ConfigError, match=r"model\.arch\.conv5\.pool: .* \(in the sweep's job .*stride=4\)"):
        check_composition(CONF, "train", ["-m", "model.arch.conv1.kernel=7,11", "model.arch.conv1.stride=2,4"])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--cfg", "job", "model=alexnet"],
        ["data.image_size=64,32"],  # a sweep without -m: Hydra's own "ambiguous value" message stays
        ["-m", "seed=range(1,3)", "hydra/launcher=slurm"],
        ["+trainer.max_epoch=3"],  # added on purpose
    ],
)
def test_what_composes_or_is_not_ours_is_left_to_hydra(argv):
    check_composition(CONF, "train", argv)
