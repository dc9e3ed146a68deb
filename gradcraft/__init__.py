"""gradcraft: a deep-learning framework built from first principles on NumPy.

Tensors with reverse-mode autograd (:mod:`gradcraft.autograd`), differentiable operations
(:mod:`gradcraft.ops`), and the layers, optimizers, data pipeline and trainer built on them.
"""

import os as _os

# NumPy's OpenBLAS keeps its idle threads spinning for 2^28 cycles (~0.1 s) after every BLAS
# call, stealing the cores from gradcraft's own worker threads (convolution, pooling, batch
# norm): a CNN step ran ~30 % slower for it. 2^20 cycles (~0.4 ms) still bridges the gaps
# between the GEMMs of one layer (much shorter timeouts make every call wake sleeping threads,
# which costs milliseconds on a virtual machine). OpenBLAS reads this once, when NumPy loads
# it; when NumPy was imported first, gradcraft.ops.accel.shorten_blas_spin applies it before
# gradcraft's worker threads first run. An explicit setting wins.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

from gradcraft import ops
from gradcraft.autograd import (
    Function,
    Tensor,
    enable_grad,
    gradcheck,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
    set_rebuild_enabled,
)
from gradcraft.autograd.creation import (
    arange,
    empty,
    eye,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    randn_like,
    tensor,
    zeros,
    zeros_like,
)
from gradcraft.backend import (
    default_dtype,
    device,
    get_rng_state,
    manual_seed,
    set_default_dtype,
    set_rng_state,
)
from gradcraft.ops import (
    abs,
    argmax,
    argmin,
    cat,
    clip,
    concatenate,
    exp,
    log,
    log_softmax,
    logsumexp,
    matmul,
    maximum,
    mean,
    minimum,
    relu,
    sigmoid,
    softmax,
    sqrt,
    stack,
    sum,
    tanh,
    where,
)

float32 = "float32"
float64 = "float64"

__version__ = "0.1.0"

__all__ = [
    "Function", "Tensor", "__version__", "abs", "arange", "argmax", "argmin", "cat", "clip",
    "concatenate", "default_dtype", "device", "empty", "enable_grad", "exp", "eye", "float32", "float64",
    "full", "full_like", "get_rng_state", "gradcheck", "is_grad_enabled", "linspace", "log",
    "log_softmax", "logsumexp", "manual_seed", "matmul", "maximum", "mean", "minimum",
    "no_grad", "ones", "ones_like", "ops", "rand", "randint", "randn", "randn_like", "relu",
    "set_default_dtype", "set_grad_enabled", "set_rebuild_enabled", "set_rng_state", "sigmoid",
    "softmax", "sqrt", "stack", "sum", "tanh", "tensor", "where", "zeros", "zeros_like",
]
