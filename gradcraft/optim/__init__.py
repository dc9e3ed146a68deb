"""Optimizers and learning-rate schedules (PyTorch's ``torch.optim``).

Every optimizer updates ``p.data`` in place from ``p.grad`` and supports parameter groups,
``zero_grad()``, ``step(closure)``, ``state_dict()`` / ``load_state_dict()`` (resumable bit
for bit; see :func:`to_json_and_arrays` for safetensors + JSON checkpoints) and the
update/weight ratio monitor (:func:`update_ratios`). Schedules live in
:mod:`gradcraft.optim.lr_scheduler`.
"""

from gradcraft.optim import lr_scheduler
from gradcraft.optim.adadelta import Adadelta
from gradcraft.optim.adagrad import Adagrad
from gradcraft.optim.adam import Adam, AdamW
from gradcraft.optim.adamax import Adamax
from gradcraft.optim.asgd import ASGD
from gradcraft.optim.lbfgs import LBFGS
from gradcraft.optim.nadam import NAdam
from gradcraft.optim.optimizer import Optimizer, from_json_and_arrays, to_json_and_arrays, update_ratios
from gradcraft.optim.radam import RAdam
from gradcraft.optim.rmsprop import RMSprop
from gradcraft.optim.rprop import Rprop
from gradcraft.optim.sgd import SGD

__all__ = [
    "ASGD",
    "LBFGS",
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "Optimizer",
    "RAdam",
    "RMSprop",
    "Rprop",
    "from_json_and_arrays",
    "lr_scheduler",
    "to_json_and_arrays",
    "update_ratios",
]
