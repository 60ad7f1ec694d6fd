"""``hydra_main``: ``hydra.main`` whose composition errors read like the project's other config errors.

Hydra composes the config (defaults, group options, command-line overrides, the typed ``model`` schema) before
the task function runs, and reports a failure there in its own words with exit code 1, where
:func:`zfnet_exp.tasks.runner.run_task` cannot see it. Hydra 1.3 has no hook for that step, so the entry point
composes the command line once itself first, with Hydra's own argument parser, override parser and ``compose``
(and, for ``-m``, every value of every sweep), and turns the three kinds of mistake a user makes there into one
paragraph and exit code 2:

* a key that does not exist (``trainer.max_epoch=3``, ``model.arch.conv1.kernal=5``): the closest valid key
  (``difflib``) and the keys that node has;
* a group option that does not exist (``model=zfnett``, ``data=imgnet``, ``callbacks=[top99]``): the options;
* a value of the wrong type for a typed key (``model.init_std=abc``): the type expected;
* a config group the entry point needs and nobody chose (``analyze.py`` without ``analysis=<name>``): the options.

Anything else (and ``--help``, ``--info``, shell completion, ``--config-dir``) is left to Hydra unchanged, which
then composes again and reports it as before; a command that composes runs exactly as under ``hydra.main``.

The scripts run the check (:func:`check_command_line`) before they import their task module: the task imports
Lightning (seconds), the check needs Hydra only, so a typo is answered in about a second.
The task is still imported before Hydra's own ``main`` starts, as a top-level import would be (Lightning sets up
its loggers at import, according to whether the root logger has handlers yet; a launcher pickles the task
function together with the task module's names).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from ..errors import ConfigError, UserError, exit_with


def hydra_main(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``@hydra_main("train")`` = ``@hydra.main(version_base="1.3", config_path="conf", config_name="train")``
    (``conf/`` next to the declaring script), plus the composition check above."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        script = inspect.getfile(task)
        conf = Path(script).resolve().parent / "conf"
        main = hydra.main(version_base="1.3", config_path=str(conf), config_name=config_name)(task)

        @functools.wraps(task)
        def entry() -> Any:
            if _passed.pop(_key(script, config_name), None) != tuple(sys.argv[1:]):  # the script did not check it
                check_command_line(script, config_name)
                _passed.pop(_key(script, config_name), None)
            return main()

        return entry

    return decorate


_passed: dict[tuple[str, str], tuple[str, ...]] = {}  # (script, config) -> the command line just checked


def _key(script: str, config_name: str) -> tuple[str, str]:
    return str(Path(script).resolve()), config_name


def check_command_line(script: str, config_name: str) -> None:
    """``python <script> <sys.argv[1:]>``, checked before Hydra runs it: :func:`check_composition` and
    :func:`check_output_folders` on the config tree next to ``script`` (its ``conf/``); a mistake ends the process
    as one ``error:`` paragraph with exit code 2. A script calls this before it imports its task module (see the
    module docstring); :func:`hydra_main` then does not check the same command line again."""
    conf = Path(script).resolve().parent / "conf"
    argv = sys.argv[1:]
    try:
        check_composition(conf, config_name, argv)
        check_output_folders(conf, config_name, argv)
    except UserError as e:  # a config error, a folder that cannot be written or is in use
        exit_with(f"{e} (command: python {Path(sys.argv[0]).name} {' '.join(argv)})")
    _passed[_key(script, config_name)] = tuple(argv)


def check_composition(conf: Path, config_name: str, argv: list[str]) -> None:
    """Compose ``config_name`` with the overrides in ``argv`` (each job of a ``-m`` sweep); raise
    :class:`ConfigError` for an unknown key, an unknown group option or a mistyped value; ignore the rest."""
    from hydra._internal.utils import get_args_parser  # the parser hydra.main itself uses

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # a bad flag: Hydra's own parse reports it, once
            args = get_args_parser().parse_args(argv)
    except SystemExit:
        return
    if args.help or args.hydra_help or args.info or args.shell_completion or args.experimental_rerun:
        return
    if args.config_path or args.config_dir:  # another config tree: left to Hydra
        return
    name = args.config_name or config_name
    composed = []
    for overrides in _jobs(args.overrides, multirun=args.multirun):
        cfg = _compose(conf, name, overrides)
        if isinstance(cfg, Exception):
            try:
                message = _explain(cfg, conf, name, overrides)
            except _NotOurs:
                return
            raise ConfigError(message)
        composed.append((overrides, cfg))
    if args.multirun:
        for overrides, cfg in composed:
            _check_job(cfg, name, overrides)


def _check_job(cfg: DictConfig, config_name: str, overrides: list[str]) -> None:
    """One composed job of a sweep (``cfg``, with its ``hydra`` node) through the check every task runs at start
    (:func:`zfnet_exp.schemas.validate_config`), before anything is launched: a wrong value in one job of a grid
    would otherwise surface only when that job starts, after the others ran. A value that does not resolve here
    (``${oc.env:...}`` of the job's node) is left to the job."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from ..schemas import validate_config
    from ..utils import resolvers  # noqa: F401  (the config's own resolvers, as the entry points register them)

    try:
        with read_write(cfg.hydra), open_dict(cfg.hydra):  # what ${paths.output_dir} reads
            cfg.hydra.runtime.output_dir = str(OmegaConf.select(cfg, "hydra.sweep.dir"))
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
        validate_config(cfg, config_name)
    except ConfigError as e:
        raise ConfigError(f"{e} (in the sweep's job {' '.join(overrides)})") from None
    except Exception:  # noqa: BLE001 - not resolvable here: the job reports it
        return


def check_output_folders(conf: Path, config_name: str, argv: list[str]) -> None:
    """The folders the command would write (run or sweep folder, data cache, W&B directory) can be created and
    written (:func:`zfnet_exp.utils.folders.check_folders`), and no live run holds the run folder (or, for a
    sweep, any of its job folders: :func:`zfnet_exp.utils.run_lock.check_free`). Checked before Hydra creates the
    run folder and writes its ``.hydra/`` files, which it does before the task runs (a failure there is a raw
    traceback; a second run would overwrite the first one's files). A command that does not compose
    (or a value that does not resolve yet) is left to Hydra and the task, as in :func:`check_composition`."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from ..utils.folders import check_folders
    from ..utils.run_lock import LOCK_NAME, check_free

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(argv)
    except SystemExit:
        return
    if args.help or args.hydra_help or args.info or args.shell_completion or args.experimental_rerun:
        return
    if args.config_path or args.config_dir or args.cfg:
        return
    jobs = _jobs(args.overrides, multirun=args.multirun)
    if not jobs:
        return
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(args.config_name or config_name, overrides=jobs[0], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        run_key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
        run_dir = OmegaConf.select(cfg, run_key)
        with read_write(cfg.hydra), open_dict(cfg.hydra):  # what ${paths.output_dir} reads
            cfg.hydra.runtime.output_dir = run_dir
    except Exception:  # noqa: BLE001 - not composable or not resolvable here: Hydra's and the task's to report
        return
    finally:
        GlobalHydra.instance().clear()
    folders = {run_key: run_dir}
    keys = ["paths.data_dir", "data.cache_dir"]
    wandb = OmegaConf.select(cfg, "logger.wandb")
    if isinstance(wandb, DictConfig) and "_target_" in wandb and wandb.get("enabled", True) is not False:
        keys.append("logger.wandb.save_dir")
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key)
        except Exception:  # noqa: BLE001 - e.g. an env resolver without its variable: the task reports it
            continue
        if isinstance(value, str) and value not in {str(v) for v in folders.values()}:
            folders[key] = value
    check_folders(folders)
    check_free(Path(run_dir).glob(f"*/{LOCK_NAME}") if args.multirun else [Path(run_dir) / LOCK_NAME])


def _jobs(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override lists to compose: the command line itself, or for ``-m`` the first job of the grid and, for
    each swept key, one job per further value (a composition error belongs to one key=value, so this meets
    every error of the grid without composing all of it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not multirun:
        return [overrides]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        choices = [
            [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            if o.is_sweep_override()
            else [o.input_line]
            for o in parsed
        ]
    except Exception:  # a sweep kind only a sweeper plugin understands (interval, ...): Hydra's to judge
        return []
    first = [c[0] for c in choices]
    jobs = [first]
    for i, values in enumerate(choices):
        jobs += [[*first[:i], v, *first[i + 1 :]] for v in values[1:]]
    return jobs


def _compose(conf: Path, config_name: str, overrides: list[str]) -> DictConfig | Exception:
    """The config ``overrides`` compose to (with its ``hydra`` node), or the error composing raised."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:
        return e
    finally:
        GlobalHydra.instance().clear()


def _explain(error: Exception, conf: Path, config_name: str, overrides: list[str]) -> str:
    """The paragraph for the three kinds of error this module handles; :class:`_NotOurs` for any other."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        return _unknown_option(error.missing_cfg_file, conf, config_name)
    unchosen = re.match(r"You must specify '([^']+)'", str(error))
    if unchosen:
        return _unchosen_group(unchosen.group(1), conf, config_name)
    cause = error.__cause__
    missing = re.match(r"Could not override '([^']+)'", str(error))
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and missing:
        return _unknown_key(missing.group(1), conf, config_name, overrides)
    if isinstance(cause, ValidationError) and cause.full_key:
        return _wrong_type(cause, overrides)
    raise _NotOurs


class _NotOurs(Exception):
    """An error :func:`check_composition` leaves to Hydra."""


def _unknown_option(missing: str, conf: Path, config_name: str) -> str:
    group, _, option = missing.rpartition("/")
    options = [o for o in _group_options(conf, config_name, group) if not o.endswith("_schema")]
    close = difflib.get_close_matches(option, options, n=1)
    suggestion = close[0] if close else (options[0] if options else "...")
    guess = f" Did you mean {group}={suggestion}?" if close else ""
    return (
        f"{group}={option} is not an option of the '{group}' config group (there is no conf/{group}/{option}.yaml); "
        f"the options are: {', '.join(options)}.{guess} Pick one of them on the command line, e.g. {group}={suggestion}"
    )


def _unchosen_group(group: str, conf: Path, config_name: str) -> str:
    """Hydra's own words first (``You must specify 'analysis'``), then the options on one line."""
    options = [o for o in _group_options(conf, config_name, group) if not o.endswith("_schema")]
    example = options[0] if options else "..."
    return (
        f"You must specify '{group}': conf/{config_name}.yaml leaves it to the command line. "
        f"The options are: {', '.join(options)}. Add one, e.g. {group}={example}"
    )


def _group_options(conf: Path, config_name: str, group: str) -> list[str]:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    finally:
        GlobalHydra.instance().clear()


def _unknown_key(full_key: str, conf: Path, config_name: str, overrides: list[str]) -> str:
    """Compose without the offending override to learn the keys that exist where the user meant one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def key_of(override: str) -> str:
        return override.split("=", 1)[0].lstrip("+~")

    rest = [o for o in overrides if key_of(o) != full_key]
    value = next((o.split("=", 1)[1] for o in overrides if key_of(o) == full_key and "=" in o), "...")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            cfg = compose(config_name, overrides=rest)
    except Exception:
        cfg = None
    finally:
        GlobalHydra.instance().clear()
    parent, node, missing = "", cfg, full_key
    for part in full_key.split("."):  # walk down to the first part that does not exist
        if not isinstance(node, DictConfig) or part not in node:
            missing = part
            break
        parent, node = f"{parent}.{part}" if parent else part, node[part]
    keys = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    where = f"{parent}." if parent else ""
    close = difflib.get_close_matches(missing, keys, n=1, cutoff=0.6)
    rest_of_key = full_key[len(where) + len(missing) :]
    fix = (
        f"Did you mean {where}{close[0]}? Fix: {where}{close[0]}{rest_of_key}={value}"
        if close
        else f"Fix the key (see python {config_name}.py --cfg job)"
    )
    known = f" The keys of {parent or 'the config'} are: {', '.join(keys)}." if 0 < len(keys) <= 30 else ""
    typed = isinstance(node, DictConfig) and OmegaConf.get_type(node) not in (dict, None)
    # a node that builds one of this package's objects takes exactly that object's parameters (the check at start
    # refuses any other key), so adding a key is no fix there; a library's object may take more (**kwargs)
    ours = isinstance(node, DictConfig) and str(node.get("_target_", "")).startswith("zfnet_exp.")
    add = "" if typed or ours else f" (or +{full_key}={value} to add a new key on purpose)"
    return f"{full_key} is not a config key.{known} {fix}{add}."


_KINDS = {"Integer": "an integer", "Float": "a number", "Boolean": "a boolean (true or false)"}


def _wrong_type(cause: ValidationError, overrides: list[str]) -> str:
    key = str(cause.full_key)
    value = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+") == key), None)
    msg = str(cause.msg).strip().splitlines()[0]
    kind = re.search(r"could not be converted to (\w+)|is not a valid (bool)|Cannot assign \w+ to (.+)$", msg)
    expected = next((g for g in kind.groups() if g), None) if kind else None
    expected = _KINDS.get(expected, "a boolean (true or false)" if expected == "bool" else expected)
    shown = f"{key}={value}" if value is not None else key
    want = f"expected {expected}" if expected else msg
    return f"{shown} is not valid: {want} ({msg}). Fix the value on the command line or in the config ({key}=...)."
