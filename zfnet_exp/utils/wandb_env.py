"""W&B without surprises: offline automatically when no credentials are configured (never a login prompt),
and a run id derived from the run folder so a resumed or requeued job continues the same W&B run."""

from __future__ import annotations

import hashlib
import netrc
import os
from pathlib import Path


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC", str(Path.home() / ".netrc")))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    return auth.authenticators(host) is not None


def wandb_offline() -> bool:
    """Offline unless WANDB_MODE asks for online or credentials exist."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    return not wandb_has_credentials()


def run_id_for(run_dir: str | os.PathLike | None) -> str | None:
    """A stable W&B id from the run folder's absolute path (W&B ids: <= 64 chars of [a-z0-9]); None (W&B picks
    one) when there is no run folder yet, e.g. under ``--cfg job``."""
    if run_dir is None:
        return None
    return hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
