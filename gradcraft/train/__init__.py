"""Training: the :class:`Trainer` loop, callbacks, metrics, history, progress, plots and reports.

Only NumPy is needed to train; the optional pieces import their libraries when used
(``TensorBoardLogger``: tensorboardX; plots: matplotlib; the progress bar: rich;
checkpoints: safetensors).
"""

from gradcraft.train.callbacks import (
    Callback,
    EarlyStopping,
    JSONLLogger,
    LambdaCallback,
    LearningRateMonitor,
    ModelCheckpoint,
    TensorBoardLogger,
)
from gradcraft.train.history import History
from gradcraft.train.metrics import (
    MetricAccumulator,
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    top_k_accuracy,
)
from gradcraft.train.progress import ProgressBar, format_epoch_line
from gradcraft.train.trainer import NonFiniteLossError, Trainer, collect_generators

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "JSONLLogger",
    "LambdaCallback",
    "LearningRateMonitor",
    "MetricAccumulator",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgressBar",
    "TensorBoardLogger",
    "Trainer",
    "accuracy",
    "collect_generators",
    "confusion_matrix",
    "format_epoch_line",
    "per_class_accuracy",
    "top_k_accuracy",
]
