"""Training: the loop, optimizers and schedules, checkpoints.

`train(model, sample_batch, loss_fn, config, generator=..., eval_batch=...)` trains any
`nn.Module` on batches drawn from a seeded generator; it is deterministic, resumable bit for bit
from its checkpoints, and stops with `status="diverged"` on the first NaN/inf.
"""

from icgd.training.checkpoint import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    STATE_FILE,
    load_checkpoint,
    load_training_state,
    read_checkpoint_metadata,
    read_metrics,
    save_checkpoint,
)
from icgd.training.config import OptimizerConfig, ScheduleConfig, TrainConfig
from icgd.training.loop import TrainResult, train
from icgd.training.optim import clip_per_matrix_, lr_factor, make_optimizer, make_scheduler

__all__ = [
    "CHECKPOINT_FILE",
    "METRICS_FILE",
    "STATE_FILE",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainResult",
    "clip_per_matrix_",
    "load_checkpoint",
    "load_training_state",
    "lr_factor",
    "make_optimizer",
    "make_scheduler",
    "read_checkpoint_metadata",
    "read_metrics",
    "save_checkpoint",
    "train",
]
