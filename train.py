"""Train a model: ``python train.py [group=option ...] [key=value ...]`` (see README)."""

import os

import hydra
from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.utils.resolvers  # noqa: E402,F401  (registers ${wandb_offline:} and ${run_id:...})
from zfnet_exp.tasks.runner import run_task  # noqa: E402
from zfnet_exp.tasks.train import optimized_metric, train  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric``'s value, which Hydra sweepers (e.g. Optuna) optimize."""
    return optimized_metric(cfg, run_task(train, cfg))


if __name__ == "__main__":
    main()
