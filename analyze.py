"""Offline analyses of a checkpoint: ``python analyze.py ckpt=<file or run folder> analysis=<name>`` (see README)."""

import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.utils.resolvers  # noqa: E402,F401
from zfnet_exp.tasks.analyze import analyze  # noqa: E402
from zfnet_exp.tasks.runner import run_task  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="analyze")
def main(cfg: DictConfig) -> None:
    run_task(analyze, cfg)


if __name__ == "__main__":
    main()
