"""Every entry point validates its whole composed config once, at start: a wrong value of ``eval.py``,
``transfer.py`` or of a Caltech / VOC data group, and a key that does not exist (``+foo=1``), end as one paragraph
on stderr naming the full key, what is valid and the fix, with exit code 2, before any checkpoint or image is
read (the checkpoint ``x`` and the folder ``/nonexistent`` below do not exist: the config error comes first).

The schemas come from the objects the config builds (:mod:`zfnet_exp.schemas.signature`): the in-process tests
below check that a subclass keeps its parent's rules under another name, and that a user's own class is checked
against its own signature. Reference for the valid values: the rules the objects declare and the YAML files."""

from __future__ import annotations

import subprocess
import sys

import lightning as L
import pytest
from helpers import CONF, ROOT, run_entry_task

from zfnet_exp.callbacks.evolution import FeatureEvolution
from zfnet_exp.errors import ConfigError
from zfnet_exp.schemas.base import check_node
from zfnet_exp.schemas.signature import schema_of

NO_DATA = "data.root=/nonexistent"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *args, "logger=none"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )


# one bad command line per entry point in a real subprocess; the others of the same kind (a wrong value or key
# found by validate_config, reported by run_task) in process below, through the same task function
BAD_VALUES_IN_A_SUBPROCESS = [
    # eval.py's own keys: a range
    ("eval.py", ["ckpt=x", "num_images=-3"], ["num_images=-3 is not valid", "a value >= 1", "num_images=..."]),
    # transfer.py: its transfer.* node (what its own check did)
    ("transfer.py", ["ckpt=x", NO_DATA, "transfer.mode=bogus"], ["transfer.mode='bogus'", "features, finetune"]),
    # the new-user command
    ("train.py", ["data=voc2012", NO_DATA, "data.batch_size=abc"], ["data.batch_size='abc'", "an integer"]),
]
BAD_VALUES_IN_PROCESS = [
    # eval.py: a key that does not exist (with the closest valid key)
    ("eval.py", ["ckpt=x", "+num_image=3"], ["num_image is not an option", "Did you mean num_images?"]),
    # transfer.py's Caltech and VOC data groups
    ("transfer.py", ["ckpt=x", "data=caltech256", NO_DATA, "data.variant=7"], ["data.variant='7'", "101, 256"]),
    ("transfer.py", ["ckpt=x", "data=voc2012", NO_DATA, "data.batch_size=0"], ["data.batch_size=0", ">= 1"]),
]


def _assert_one_paragraph(returncode: int, stderr: str, script: str, words: list[str]) -> None:
    assert returncode == 2, stderr[-2000:]
    msg = stderr.strip()
    assert msg.startswith("error: ") and "\n" not in msg and "Traceback" not in stderr, msg  # one paragraph
    assert all(w in msg for w in words), msg
    assert f"python {script}" in msg or "Did you mean" in msg, msg  # the fix names the command or the key


@pytest.mark.parametrize(
    ("script", "args", "words"), BAD_VALUES_IN_A_SUBPROCESS, ids=lambda v: v if isinstance(v, str) else None
)
def test_bad_value_of_any_entry_point_is_one_paragraph_exit_2(script, args, words):
    r = _run(script, *args)
    _assert_one_paragraph(r.returncode, r.stderr, script, words)


@pytest.mark.parametrize(
    ("script", "args", "words"), BAD_VALUES_IN_PROCESS, ids=lambda v: v if isinstance(v, str) else None
)
def test_more_bad_values_are_the_same_paragraph_in_process(script, args, words, tmp_path):
    """What the entry point does with the config Hydra hands it, in process (``run_entry_task``: ``run_task(<its
    task>, cfg)`` on the config composed as ``python <script> <args> logger=none`` composes it); the same stderr
    and exit code as the subprocesses above (the task validates the config before it reads any checkpoint or
    image)."""
    code, err = run_entry_task(script.removesuffix(".py"), [*args, "logger=none"], tmp_path / "run")
    _assert_one_paragraph(code, err, script, words)


def _compose(name: str, overrides: list[str]):
    """``name``.yaml composed as its entry point sees it (``${hydra:...}`` resolvable)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[*overrides, "logger=none"], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = "/nonexistent/run"  # a string is all validation reads
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("eval", ["ckpt=x", "+foo=1"], r"^foo is not an option of python eval.py's config; valid keys: .*num_images"),
        ("eval", ["ckpt=x", "split=test"], r"^split='test' is not valid: expected one of val, train"),
        ("eval", ["ckpt=x", "data=caltech101", NO_DATA, "data.image_size=8"], r"^data.image_size=8 .*>= 64"),
        ("eval", ["ckpt=[]"], r"^ckpt=\[\] is not valid"),
        (
            "transfer",
            ["ckpt=x", NO_DATA, "transfer.mode=finetune", "transfer.classifier=svm"],
            r"transfer.mode=features",
        ),
        ("transfer", ["ckpt=x", NO_DATA, "transfer.per_class=[0,5]"], r"^transfer.per_class=\[0, 5\] .*>= 1"),
        ("transfer", ["ckpt=x", NO_DATA, "transfer.layer=9"], r"^transfer.layer=9 .*1..7"),
        ("transfer", ["ckpt=x", NO_DATA, "+batch_sise=3"], r"^batch_sise is not an option.*Did you mean batch_size\?"),
        ("transfer", ["ckpt=x", "data=caltech101", NO_DATA, "data.test_per_class=0"], r"^data.test_per_class=0 "),
        ("transfer", ["ckpt=x", "data=voc2012", NO_DATA, "data.strict=maybe"], r"^data.strict='maybe' .*boolean"),
        ("analyze", ["ckpt=x", "analysis=top9", "+analysis.kk=3"], r"^analysis.kk is not an option.*analysis.k\?"),
        ("analyze", ["ckpt=x", "analysis=top9", "+fooo=1"], r"^fooo is not an option of python analyze.py's config"),
        ("train", ["+trainer.max_epoch=3"], r"^trainer.max_epoch is not an option.*Did you mean trainer.max_epochs\?"),
        ("train", ["model.optimizer.momentun=0.9"], None),  # composition refuses it first (typed model)
        ("train", ["+model.optimizer.momentun=0.9"], r"^model.optimizer.momentun is not an option"),
        ("train", [NO_DATA, "data=caltech101", "data.per_class=0"], r"^data.per_class=0 .*>= 1"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_every_group_of_every_entry_point_is_validated(name, args, message):
    from zfnet_exp.schemas import validate_config

    if message is None:
        with pytest.raises(Exception, match="momentun"):
            _compose(name, args)
        return
    with pytest.raises(ConfigError, match=message):
        validate_config(_compose(name, args), name)


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("eval", ["ckpt=x"]),
        ("eval", ["ckpt=[a,b]", "data=imagenet", NO_DATA]),
        *[("transfer", ["ckpt=x", f"data={d}", NO_DATA]) for d in ("caltech101", "caltech256", "voc2012")],
        ("transfer", ["ckpt=null", "transfer.mode=scratch", NO_DATA]),
        *[("train", [f"data={d}", NO_DATA]) for d in ("imagefolder", "imagenet", "caltech101", "caltech256")],
    ],
)
def test_shipped_configs_of_every_entry_point_pass(name, args):
    """Positive control for the cases above (else each would pass vacuously)."""
    from zfnet_exp.schemas import validate_config

    validate_config(_compose(name, args), name)


class RenamedEvolution(FeatureEvolution):
    """A subclass under another name: the rules of FeatureEvolution still apply (found on the class, not by
    its name)."""


class UserCallback(L.Callback):
    """A user's own callback with no declared rules: its signature alone is the schema."""

    def __init__(self, every: int = 1, label: str | None = None):
        self.every, self.label = every, label


def test_subclass_under_another_name_keeps_its_parents_rules():
    node = {"_target_": f"{__name__}.RenamedEvolution", "epochs": [0, 2]}
    schema = schema_of(RenamedEvolution, switch=True)
    with pytest.raises(ConfigError, match=r"^callbacks.mine.epochs=\[0, 2\] is not valid: expected a value >= 1"):
        check_node(schema.dataclass, node, "callbacks.mine")
    built = check_node(schema.dataclass, {**node, "epochs": [1, 3]}, "callbacks.mine")
    assert built.num_images == 256  # FeatureEvolution's own default: the signature is the one source


def test_user_class_is_checked_against_its_own_signature():
    schema = schema_of(UserCallback, switch=True)
    with pytest.raises(ConfigError, match=r"^callbacks.mine.every='often' is not valid: expected an integer"):
        check_node(schema.dataclass, {"_target_": "x", "every": "often"}, "callbacks.mine")
    with pytest.raises(ConfigError, match=r"callbacks.mine.labl is not an option.*Did you mean callbacks.mine.label?"):
        check_node(schema.dataclass, {"_target_": "x", "labl": "a"}, "callbacks.mine")
    assert check_node(schema.dataclass, {"_target_": "x", "enabled": False}, "callbacks.mine").every == 1


def _signature_default(obj, name: str):
    """Reference: the first ``__init__`` up the class hierarchy (or the function) that names ``name``."""
    import inspect

    for f in [c.__init__ for c in obj.__mro__ if "__init__" in vars(c)] if inspect.isclass(obj) else [obj]:
        parameter = inspect.signature(f).parameters.get(name)
        if parameter is not None:
            return parameter.default
    raise AssertionError(f"{obj} takes no {name}")


@pytest.mark.parametrize(
    ("name", "args", "group"),
    [
        ("train", ["data=shapes"], "callbacks"),
        ("train", ["data=imagenet", NO_DATA], "data"),
        ("transfer", ["ckpt=x", "data=caltech256", NO_DATA], "data"),
        ("transfer", ["ckpt=x", "data=voc2012", NO_DATA], "data"),
        *[("analyze", ["ckpt=x", f"analysis={a}"], "analysis") for a in ("top9", "invariance", "faithfulness")],
    ],
)
def test_yaml_default_is_the_objects_own_default(name, args, group):
    """``${default:}`` in a YAML file is the default of the ``_target_``'s own argument: each one resolves to what
    ``inspect.signature`` says (tuples as lists), and a command-line value still wins."""
    from hydra.utils import get_object
    from omegaconf import OmegaConf

    cfg = _compose(name, args)
    raw = OmegaConf.to_container(cfg[group], resolve=False)
    nodes = raw.items() if "_target_" not in raw else [(None, raw)]
    checked = 0
    for node_name, node in nodes:
        if not isinstance(node, dict) or "_target_" not in node:
            continue
        resolved = OmegaConf.to_container(cfg[group][node_name] if node_name else cfg[group], resolve=True)
        for key, value in node.items():
            if value == "${default:}":
                expected = _signature_default(get_object(node["_target_"]), key)
                assert resolved[key] == (list(expected) if isinstance(expected, tuple) else expected), (node_name, key)
                checked += 1
    assert checked >= 5, checked
    if group == "callbacks":
        assert list(_compose(name, [*args, "callbacks.evolution.epochs=[1,3]"]).callbacks.evolution.epochs) == [1, 3]
