"""The one training loop and what plugs into it: tasks, objectives, configs, checkpoints.

`train` runs fine-tuning and quantization-aware training alike; a `Task` brings data, model class,
losses' inputs and metric; an `Objective` turns outputs into the loss (task loss, or logit
distillation with the token-level contrastive loss, Eq. 2-5, docs/method.md#token-level-contrastive-distillation).
"""

from quantgpt.training.checkpoints import CheckpointManager
from quantgpt.training.config import TrainingConfig
from quantgpt.training.data import StepBatchSampler
from quantgpt.training.interrupt import SIGTERM_EXIT_CODE, TrainingInterrupted
from quantgpt.training.loop import TrainingModule, TrainResult, make_accelerator, train
from quantgpt.training.metrics import read_metrics
from quantgpt.training.objectives import (
    DistillationObjective,
    FineTuneObjective,
    Objective,
    ObjectiveConfig,
    build_objective,
)
from quantgpt.training.optim import build_optimizer, build_scheduler
from quantgpt.training.task import TASKS, DistillTargets, Task, task_class

__all__ = [
    "SIGTERM_EXIT_CODE",
    "TASKS",
    "CheckpointManager",
    "DistillTargets",
    "DistillationObjective",
    "FineTuneObjective",
    "Objective",
    "ObjectiveConfig",
    "StepBatchSampler",
    "Task",
    "TrainResult",
    "TrainingConfig",
    "TrainingInterrupted",
    "TrainingModule",
    "build_objective",
    "build_optimizer",
    "build_scheduler",
    "make_accelerator",
    "read_metrics",
    "task_class",
    "train",
]
