"""Errors a user can fix. The task runner (:func:`zfnet_exp.tasks.runner.run_task`) prints their message (one
paragraph: the problem and the fix) without a traceback and exits with code 2. Package level, because every
layer raises them: config validation, datamodules, models, diagnostics, tasks."""

import sys


class UserError(Exception):
    """A problem with the user's configuration or data, not a bug: shown without a traceback."""


class ConfigError(UserError):
    """A config value is missing, unknown or out of range (detected at start, before anything is built)."""


class DataError(UserError):
    """A dataset folder is missing, has the wrong layout, or holds an unreadable file."""


def exit_with(message: str) -> None:
    """Print ``message`` as the one ``error:`` paragraph on stderr and exit with code 2 (the project's exit for a
    user error: the task runner, the entry points' composition check and the launcher check all end here)."""
    print(f"\nerror: {message}\n", file=sys.stderr, flush=True)
    raise SystemExit(2)
