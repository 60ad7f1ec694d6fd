"""Train a model: ``python train.py [group=option ...] [key=value ...]`` (see README)."""

import os

from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.schemas  # noqa: E402,F401  (registers the structured-config schemas that composition checks)
import zfnet_exp.utils.resolvers  # noqa: E402,F401  (registers ${wandb_offline:} and ${run_id:...})
from zfnet_exp.tasks.entry import hydra_main  # noqa: E402


@hydra_main("train")  # hydra.main + composition errors as one paragraph, exit code 2
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric``'s value, which Hydra sweepers (e.g. Optuna) optimize."""
    # imported here, not at the top: the task pulls in torch and Lightning (seconds), which a command refused at
    # start (a config error, a folder in use, a SLURM request that cannot run) and the process that only submits
    # a sweep's jobs never need
    from zfnet_exp.tasks.runner import run_task
    from zfnet_exp.tasks.train import optimized_metric, train

    return optimized_metric(cfg, run_task(train, cfg))


if __name__ == "__main__":
    main()
