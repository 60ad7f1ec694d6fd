"""Evaluate checkpoints (centre crop and 10-crop, ensembles): ``python eval.py ckpt=<file or run folder>`` (README)."""

import os

from omegaconf import DictConfig

os.environ.setdefault("PROJECT_ROOT", os.path.dirname(os.path.abspath(__file__)))

import zfnet_exp.utils.resolvers  # noqa: E402,F401
from zfnet_exp.tasks.entry import check_command_line, hydra_main  # noqa: E402

if __name__ == "__main__":  # a mistake on the command line is answered before the task's imports (Lightning)
    check_command_line(__file__, "eval")

from zfnet_exp.tasks.eval import evaluate  # noqa: E402
from zfnet_exp.tasks.runner import run_task  # noqa: E402


@hydra_main("eval")  # hydra.main + composition errors as one paragraph, exit code 2
def main(cfg: DictConfig) -> None:
    run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
