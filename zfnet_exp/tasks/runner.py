"""Shared wrapper for task entry points: user errors become one clear paragraph and exit code 2 (no
traceback wall), and an open W&B run is always closed (marked failed when the task raised) so the jobs of a
multirun never share a run and a run that stopped on an error does not look finished in W&B.

Config errors OmegaConf raises while a task reads its config (an interpolation to a key that does not exist,
a value of the wrong type) are user errors too: they name the full key, and get the same treatment."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from ..errors import UserError, exit_with


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    exit_code = 1  # an exception (a bug, or a user error below) marks the W&B run failed
    try:
        result = task(cfg)
        exit_code = 0
        return result
    except UserError as e:
        exit_code = 2
        exit_with(str(e))
    except MissingMandatoryValue as e:
        key = getattr(e, "full_key", None) or "a required value"
        exit_with(
            f"{key} must be set (it is '???' in the config). Pass it on the command line, e.g. "
            f"python train.py {key}=..."
        )
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(getattr(e, "msg", None) or e).strip().splitlines()[0]
        source = _INTERPOLATED.search(msg)
        if source:  # a typed key (e.g. model.input_size) reads a bad value from another key: name that one
            src, value, kind = source.groups()
            exit_with(
                f"{src}={value!r} is not valid: expected {_KINDS.get(kind, kind.lower())} ({key} reads it). "
                f"Fix it in the config or on the command line ({src}=...)."
            )
        exit_with(f"{key}: {msg}. Fix the config or the command line." if key else f"{msg}. Fix the config.")
    except (SystemExit, KeyboardInterrupt):
        exit_code = 0  # the task's own exit (a preemption, a requeue): the W&B run continues in the requeued job
        raise
    finally:
        finish_wandb(exit_code)


_INTERPOLATED = re.compile(
    r"dereferencing interpolation '\$\{([^}]+)\}': Value '(.*?)' of type '\w+' could not be converted to (\w+)"
)
_KINDS = {"Integer": "an integer", "Float": "a number", "Boolean": "a boolean (true or false)"}


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run; a non-zero ``exit_code`` (the task raised) marks it failed in W&B, as the exit code
    says. A SLURM requeue (preemption) terminates the job step, W&B's service process included,
    while the task is still closing the run: the run's files are already on disk and the requeued job resumes the
    same run, so a lost service connection here is said, not raised (it would turn the requeued job into a
    failed one)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        lost: tuple[type[BaseException], ...] = (ConnectionError, wandb.errors.Error)
        try:
            from wandb.sdk.mailbox.mailbox import MailboxClosedError  # the service is gone

            lost += (MailboxClosedError,)
        except ImportError:
            pass
        try:
            wandb.finish(exit_code=exit_code)
        except lost as e:
            print(f"W&B: the run could not be closed cleanly ({type(e).__name__}); its files are kept.", flush=True)
