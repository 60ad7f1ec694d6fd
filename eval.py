"""Evaluate checkpoints (centre crop and 10-crop, ensembles): ``python eval.py ckpt=<file or run folder>`` (README)."""

import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.utils.resolvers  # noqa: E402,F401
from zfnet_exp.tasks.eval import evaluate  # noqa: E402
from zfnet_exp.tasks.runner import run_task  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
