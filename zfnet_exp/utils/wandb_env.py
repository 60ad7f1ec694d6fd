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


def _hydra_cfg():
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except ValueError:
        return None


def sweep_group(default: str) -> str:
    """W&B ``group`` of a job: in a multirun, the sweep folder's name (``<time>_<run name>``: every job of one
    sweep, and every requeue or re-launch into the same folder, lands in one group); else ``default``."""
    hc = _hydra_cfg()
    if hc is not None and str(hc.mode) == "RunMode.MULTIRUN":
        return Path(hc.sweep.dir).name
    return default


def job_label(name: str) -> str:
    """W&B run name: ``name`` plus ``#<job number>`` in a multirun (the jobs of one sweep would otherwise all be
    called ``zfnet_shapes``; the job's overrides are in the run's config and in its folder's .hydra/)."""
    hc = _hydra_cfg()
    if hc is not None and str(hc.mode) == "RunMode.MULTIRUN":
        return f"{name}#{hc.job.num}"
    return name


def with_tags(tags=None) -> list[str]:
    """The user's tags plus the model variant and dataset chosen for this run (Hydra's config-group choices, where
    the task has those groups), deduplicated, order kept."""
    hc = _hydra_cfg()
    choices = hc.runtime.choices if hc is not None else {}
    out: list[str] = []
    for t in [*(tags or []), choices.get("model"), choices.get("data")]:
        if t is not None and str(t) not in out:
            out.append(str(t))
    return out
