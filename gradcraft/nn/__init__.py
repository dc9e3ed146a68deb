"""Layers, losses, initialization and regularization (PyTorch's ``torch.nn``).

``gradcraft.nn.functional`` (``F``) holds the stateless forms, ``gradcraft.nn.init`` the
initialization schemes.
"""

from gradcraft.nn import functional, init, utils
from gradcraft.nn.activation import (
    ELU,
    GELU,
    SELU,
    LeakyReLU,
    LogSoftmax,
    PReLU,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Swish,
    Tanh,
)
from gradcraft.nn.containers import Flatten, Identity, ModuleDict, ModuleList, Sequential, Unflatten
from gradcraft.nn.conv import Conv2d
from gradcraft.nn.dropout import (
    AlphaDropout,
    Dropout,
    Dropout2d,
    GaussianDropout,
    GaussianNoise,
    StochasticDepth,
)
from gradcraft.nn.linear import DropConnect, Linear, Maxout
from gradcraft.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    MultiMarginLoss,
    NLLLoss,
    SmoothL1Loss,
)
from gradcraft.nn.module import (
    IncompatibleKeys,
    LayerError,
    Module,
    Parameter,
    RemovableHandle,
    StateDictError,
)
from gradcraft.nn.normalization import BatchNorm1d, BatchNorm2d, LayerNorm
from gradcraft.nn.pooling import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    FractionalMaxPool2d,
    GlobalAvgPool2d,
    MaxPool2d,
)
from gradcraft.nn.regularizers import L1, L2, ActivationL1, ElasticNet, MaxNorm, Regularizer
from gradcraft.nn.residual import BasicBlock
from gradcraft.nn.summary import ModelSummary, summary

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BasicBlock",
    "Conv2d",
    "FractionalMaxPool2d",
    "GlobalAvgPool2d",
    "MaxPool2d",
    "utils",
    "ELU",
    "GELU",
    "L1",
    "L2",
    "SELU",
    "ActivationL1",
    "AlphaDropout",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "CrossEntropyLoss",
    "DropConnect",
    "Dropout",
    "Dropout2d",
    "ElasticNet",
    "Flatten",
    "GaussianDropout",
    "GaussianNoise",
    "HuberLoss",
    "Identity",
    "IncompatibleKeys",
    "L1Loss",
    "LayerError",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxNorm",
    "Maxout",
    "ModelSummary",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiMarginLoss",
    "NLLLoss",
    "PReLU",
    "Parameter",
    "ReLU",
    "Regularizer",
    "RemovableHandle",
    "SiLU",
    "Sequential",
    "Sigmoid",
    "SmoothL1Loss",
    "Softmax",
    "Softplus",
    "StateDictError",
    "StochasticDepth",
    "Swish",
    "Tanh",
    "Unflatten",
    "functional",
    "init",
    "summary",
]
