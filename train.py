"""Train a model: ``python train.py [group=option ...] [key=value ...]`` (see README)."""

import os

from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.utils.resolvers  # noqa: E402,F401  (registers ${wandb_offline:} and ${run_id:...})
from zfnet_exp.tasks.entry import check_command_line, hydra_main  # noqa: E402

if __name__ == "__main__":  # a mistake on the command line is answered before the task's imports (Lightning)
    check_command_line(__file__, "train")

from zfnet_exp.tasks.runner import run_task  # noqa: E402
from zfnet_exp.tasks.train import optimized_metric, train  # noqa: E402


@hydra_main("train")  # hydra.main + composition errors as one paragraph, exit code 2
def main(cfg: DictConfig) -> float | None:
    """Returns ``optimized_metric``'s value, which Hydra sweepers (e.g. Optuna) optimize."""
    return optimized_metric(cfg, run_task(train, cfg))


if __name__ == "__main__":
    main()
