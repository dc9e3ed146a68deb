"""2-D convolution (cross-correlation): im2col + GEMM, 1×1 as one GEMM, Winograd for 3×3.

``conv2d(x, w, b)`` computes, for input ``x`` of shape (N, C_in, H, W) and weight ``w`` of
shape (C_out, C_in / groups, kH, kW) (PyTorch's ``F.conv2d``)::

    y[n, o, i, j] = b[o] + Σ_{c, p, q} w[o, c, p, q] · x_pad[n, g·C_g + c, i·s_h + p·d_h, j·s_w + q·d_w]

where ``g = o // (C_out / groups)`` is the group of output channel ``o`` and ``C_g = C_in / groups``.
The output size along each axis is ``⌊(H + pad_total − d·(k − 1) − 1) / s⌋ + 1``.

The general path (the cs231n "im2col" recipe, laid out so that nothing is copied twice):

* The input is viewed channels-last, (N, H, W, C), and padded into one buffer (no copy at all
  when it already is channels-last and unpadded).
* A strided *view* of every receptive field, (N, H_out, W_out, kH, kW, C), is built with
  ``as_strided`` (no copy). Copying it gives the column matrix ``cols`` of shape (G, M, K_g)
  with ``M = N·H_out·W_out`` rows and ``K_g = kH·kW·C_g`` columns; in the channels-last layout
  each (kW · C) run of a window row is contiguous, so the copy streams.
* ``Y = cols @ W`` (a BLAS GEMM per group) gives (M, C_out), which *is* the output in
  channels-last memory order. The op returns it as a (N, C_out, H_out, W_out) array whose
  strides are channels-last (``y.transpose(0, 2, 3, 1)`` is C-contiguous). Values and shape are
  those of PyTorch; only the memory order differs, and the next convolution, pooling or
  batch-norm layer reads that order without a copy. Call ``numpy.ascontiguousarray`` when a
  C-ordered array is needed.
* A 1×1 convolution with stride 1 and no padding needs no im2col: the channels-last input is
  the column matrix, and the layer is one GEMM per group.

Backward, with G = dY viewed as (M, C_out):

* ``db = Σ_M G``;
* ``dW = colsᵀ @ G`` (per group);
* ``dcols = G @ Wᵀ`` (per group), then ``col2im`` adds each of the kH·kW slices of ``dcols``
  back into dX with one strided add per kernel offset (no ``add.at``); the compiled kernel
  (:func:`gradcraft.ops.kernels.im2col.col2im`) makes the same adds in the same order in one
  pass per offset (a stride-2 3×3 layer's backward at batch 32: 6.4 → 5.3 ms).

Each gradient is computed only when that input needs one (``needs_input_grad``): the first
layer, whose input is data, never builds dX. For dW the op keeps its input ``x`` itself, not
the padded channels-last buffer: ``x`` is usually the previous ReLU's output, which nothing
else needs to keep, so between the passes a convolution costs no memory beyond its input
(the padded copies were 15–100 % larger per layer: 124 MiB of 646 MiB at batch 512 in the
benchmark residual network). When the compiled kernels run, neither path pads at all: the
im2col kernel and the Winograd tile transform read the border as zeros (a stride-2 layer's
padded copy was as large as its input, in forward and again in backward). Without them the
im2col path copies ``x`` into a padded buffer in each pass.

Winograd path. A 3×3, stride-1, undilated, ungrouped convolution with at least
:data:`WINOGRAD_MIN_CHANNELS` input channels (every 3×3 layer of a VGG/ResNet body) uses
Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, 2016) instead: each 2×2 block of
outputs comes from a 4×4 input tile d as ``Aᵀ [(G w Gᵀ) ⊙ (Bᵀ d B)] A``. Summed over input
channels, the element-wise product becomes 16 GEMMs of shape (tiles, C_in) @ (C_in, C_out),
2.25× fewer multiply-adds than im2col's GEMM, and the transformed tiles are 4× the input
instead of 9×. Backward is Winograd again: dX is the same 3×3 convolution of the padded dY
with the flipped, transposed filters, and dW = Gᵀ (Σ_tiles Vᵀ · A dY Aᵀ) G. The transforms
only add, subtract and halve, so in float32 the result differs from direct convolution by a
few units in the last place (as cuDNN's and oneDNN's Winograd kernels do); float64 agrees
with PyTorch to 1e-10 in the tests. Set ``WINOGRAD_MIN_CHANNELS`` very large to turn it off.

Blocks and threads. The full column matrix is kH·kW times the input (115 MB for a
128×32×28×28 float32 input and a 3×3 kernel); writing it to memory and reading it back for
three GEMMs costs more than the arithmetic on a memory-bound CPU. So on the CPU the M rows
are processed in blocks of about :data:`BLOCK_BYTES` of columns (whole samples, or bands of
output rows of one sample): a block's columns are written into a reused buffer and
multiplied while still in cache, and backward rebuilds them block by block instead of
keeping them (saving that memory too). The M rows of a block are contiguous, so each block
is still a single GEMM per group with the full K_g depth; Winograd tiles are processed in
blocks of :data:`WINOGRAD_BLOCK_BYTES` the same way; a small batch is cut into smaller
blocks, :data:`BLOCKS_PER_WORKER` per thread (:func:`block_budget`), so that every core has
work. Blocks are independent, so they are spread over worker threads, as many as NumPy's
BLAS uses (``threadpoolctl``'s ``threadpool_limits(n)`` sets both), each GEMM then running
on one BLAS thread: the memory-bound copies and adds run on every core, not only the GEMMs.
The blocks' partial sums of dW are added in a fixed order (:func:`parallel_sum`), so
a run repeats bit for bit with the same thread count. Without ``threadpoolctl`` (the
``fast`` extra) the blocks run one after another and BLAS threads each GEMM. On CuPy the
whole batch is one block.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from typing import Any

from gradcraft.autograd.function import Function
from gradcraft.autograd.tensor import Tensor
from gradcraft.backend import get_array_module
from gradcraft.ops import accel
from gradcraft.ops._util import sum_rows

__all__ = [
    "BLOCK_BYTES",
    "BLOCKS_PER_WORKER",
    "MIN_BLOCK_BYTES",
    "PARALLEL_MIN_BYTES",
    "WINOGRAD_BLOCK_BYTES",
    "WINOGRAD_MIN_CHANNELS",
    "CHUNK_BYTES",
    "block_budget",
    "channels_last_padded",
    "col2im_block",
    "conv2d",
    "conv_output_size",
    "im2col_block",
    "im2col_reader",
    "num_threads",
    "pair",
    "parallel_for",
    "parallel_sum",
    "sample_chunks",
    "winograd_conv",
    "winograd_filter_grad",
    "winograd_weight_grad",
    "winograd_weights",
]

IntPair = tuple[int, int]


def pair(value: Any, name: str, minimum: int = 1) -> IntPair:
    """``value`` (an int or a pair of ints) as a ``(height, width)`` pair, checked ≥ ``minimum``.

    Raises:
        ValueError: naming ``name`` when the value is not an int or pair, or too small.
    """
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"Expected {name} to be an int or a pair of ints. Received: {name}={value!r}")
        out = (value[0], value[1])
    else:
        out = (value, value)
    for v in out:
        if isinstance(v, bool) or not hasattr(v, "__index__"):
            raise ValueError(f"Expected {name} to be an int or a pair of ints. Received: {name}={value!r}")
        if int(v) < minimum:
            raise ValueError(f"Expected {name} ≥ {minimum}. Received: {name}={value!r}")
    return int(out[0]), int(out[1])


def conv_output_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length of a sliding window: ⌊(size + pad_total − dilation·(kernel − 1) − 1) / stride⌋ + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def _padding(padding: Any, kernel: IntPair, stride: IntPair, dilation: IntPair) -> tuple[IntPair, IntPair]:
    """Normalize ``padding`` to ((top, bottom), (left, right)).

    Accepts an int, a (pad_h, pad_w) pair, ``"valid"`` (no padding) or ``"same"`` (output size
    equals input size; stride must be 1; for an even effective kernel the extra row/column goes
    at the bottom/right, as in PyTorch).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"Expected stride=1 with padding='same'. Received: stride={stride}")
            out = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                out.append((total // 2, total - total // 2))
            return out[0], out[1]
        raise ValueError(
            f"Expected padding to be an int, a pair, 'same' or 'valid'. Received: padding={padding!r}"
        )
    ph, pw = pair(padding, "padding", minimum=0)
    return (ph, ph), (pw, pw)


def channels_last_padded(x: Any, pads: tuple[IntPair, IntPair], fill: float = 0.0) -> Any:
    """``x`` (N, C, H, W) as a C-contiguous channels-last (N, H + pads, W + pads, C) array.

    No copy is made when ``x`` already has channels-last memory order and no padding is asked
    for; otherwise one copy writes the (padded) channels-last buffer, filling only the border
    with ``fill`` (0 for convolution, −∞ for max pooling). The copy is split over the batch and
    runs on the worker threads.
    """
    xp = get_array_module(x)
    nhwc = x.transpose(0, 2, 3, 1)
    (pt, pb), (pl, pr) = pads
    if pt == pb == pl == pr == 0 and nhwc.flags.c_contiguous:
        return nhwc
    n, h, w, c = nhwc.shape
    buf = xp.empty((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
    chunks = sample_chunks(xp, n, x[:1].nbytes)

    def copy(i: int, _scratch: dict) -> None:
        n0, n1 = chunks[i]
        part = buf[n0:n1]
        part[:, :pt] = fill
        part[:, pt + h :] = fill
        part[:, pt : pt + h, :pl] = fill
        part[:, pt : pt + h, pl + w :] = fill
        part[:, pt : pt + h, pl : pl + w] = nhwc[n0:n1]

    parallel_for(xp, len(chunks), copy)
    return buf


#: Bytes of input per task when element-wise work (padding, pooling) is split over the batch.
CHUNK_BYTES = 512 * 1024
#: Element-wise work on fewer bytes than this runs on the calling thread: waking a worker
#: costs tens of microseconds, more than a core saves on a pass over a few hundred KiB.
PARALLEL_MIN_BYTES = 2 * 1024 * 1024


def sample_chunks(xp: Any, n: int, sample_bytes: int, budget: int | None = None) -> list[tuple[int, int]]:
    """Split a batch of ``n`` samples into ranges ``(n0, n1)`` of about ``budget`` bytes
    (:data:`CHUNK_BYTES` by default); one range on CuPy or when the whole batch is smaller
    than :data:`PARALLEL_MIN_BYTES`."""
    if xp.__name__ != "numpy" or n * sample_bytes < PARALLEL_MIN_BYTES:
        return [(0, n)]
    per = max(1, (CHUNK_BYTES if budget is None else budget) // max(1, sample_bytes))
    return [(i, min(n, i + per)) for i in range(0, n, per)]


def _windows(buf: Any, out_hw: IntPair, kernel: IntPair, stride: IntPair, dilation: IntPair) -> Any:
    """Strided view (N, H_out, W_out, kH, kW, C) of every receptive field of ``buf`` (N, H, W, C)."""
    xp = get_array_module(buf)
    sn, sh, sw, sc = buf.strides
    shape = (buf.shape[0], out_hw[0], out_hw[1], kernel[0], kernel[1], buf.shape[3])
    strides = (sn, sh * stride[0], sw * stride[1], sh * dilation[0], sw * dilation[1], sc)
    if xp.__name__ == "numpy":  # read-only, so a stray write cannot corrupt the input
        return xp.lib.stride_tricks.as_strided(buf, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(buf, shape=shape, strides=strides)


def matmul_into(xp: Any, a: Any, b: Any, out: Any) -> None:
    """``out[...] = a @ b``, written by BLAS straight into ``out`` (which may be a strided view)
    on NumPy; through a temporary elsewhere."""
    if xp.__name__ == "numpy":
        xp.matmul(a, b, out=out)
    else:
        out[...] = xp.matmul(a, b)


def _valid_range(size: int, out: int, k: int, stride: int, dilation: int, pad: int) -> tuple[int, int, int]:
    """For kernel offset ``k``: output indices [lo, hi) whose input index i·s + k·d − pad lies in
    [0, size), and the first such input index."""
    offset = k * dilation - pad
    lo = max(0, -(offset // stride))
    hi = min(out, (size - 1 - offset) // stride + 1)
    return lo, max(lo, hi), lo * stride + offset


#: Bytes of im2col columns built at a time on the CPU. A block's columns are multiplied right
#: after they are written, while still in cache (sized for 512 KiB L2 per core, 8 MiB L3).
BLOCK_BYTES = 1024 * 1024
#: With several worker threads, a small batch is cut into at least this many blocks per
#: thread (while a block keeps :data:`MIN_BLOCK_BYTES`), so that every core gets work and one
#: slowed by another process does not hold up the rest.
BLOCKS_PER_WORKER = 4
#: The smallest block :func:`block_budget` cuts a small batch into.
MIN_BLOCK_BYTES = 128 * 1024

Block = tuple[int, int, int, int]


def block_budget(xp: Any, total_bytes: int, budget: int) -> int:
    """Bytes per block for work of ``total_bytes``: ``budget``, or less for a small batch so
    that each of several worker threads gets :data:`BLOCKS_PER_WORKER` blocks of at least
    :data:`MIN_BLOCK_BYTES`; ``budget`` on one thread; the whole work on CuPy."""
    if xp.__name__ != "numpy":
        return total_bytes
    threads = num_threads(xp)
    if threads <= 1:
        return budget
    share = -(-total_bytes // (BLOCKS_PER_WORKER * threads))
    return min(budget, max(MIN_BLOCK_BYTES, share))


def blocks_of(n: int, ho: int, wo: int, row_bytes: int, budget: int) -> list[list[Block]]:
    """Split the (N, H_out) output grid into blocks ``(n0, n1, h0, h1)`` of about ``budget``
    bytes of columns: several whole samples when a sample fits, else bands of output rows.

    Returns the blocks grouped into units that never share an input sample (a sample's row
    bands overlap in dX, so one thread must handle all of them). The output rows (n, i, j) of
    a block are one contiguous range of the M axis.
    """
    rows = max(1, budget // max(1, row_bytes))
    per_sample = ho * wo
    if rows >= per_sample:
        nb = rows // per_sample
        return [[(n0, min(n, n0 + nb), 0, ho)] for n0 in range(0, n, nb)]
    hb = max(1, rows // wo)
    return [[(i, i + 1, h0, min(ho, h0 + hb)) for h0 in range(0, ho, hb)] for i in range(n)]


# ---------------------------------------------------------------------------- threads
class _Threads:
    """The worker pool shared by the CPU kernels of this family (conv, pooling)."""

    lock = threading.Lock()
    executor: ThreadPoolExecutor | None = None
    size = 0
    blas: list[Any] | None = None  # threadpoolctl controllers of NumPy's BLAS


def _blas_controllers(xp: Any) -> list[Any]:
    if _Threads.blas is None:
        try:
            import threadpoolctl
        except ImportError:
            _Threads.blas = []
        else:
            libs = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
            own = [lib for lib in libs if "numpy" in str(lib.filepath)]
            _Threads.blas = own or list(libs)
            accel.shorten_blas_spin(_Threads.blas)
    return _Threads.blas


def num_threads(xp: Any) -> int:
    """Worker threads the CPU kernels use: NumPy's BLAS thread count (1 without threadpoolctl)."""
    if getattr(xp, "__name__", "") != "numpy":
        return 1
    libs = _blas_controllers(xp)
    return max(1, int(libs[0].get_num_threads())) if libs else 1


def parallel_for(xp: Any, n_tasks: int, body: Callable[[int, dict], None]) -> list[dict]:
    """Run ``body(i, scratch)`` for every ``i`` in ``range(n_tasks)`` on the worker threads.

    Each worker pulls the next task index as soon as it is free (so a core slowed by another
    process simply does fewer tasks) and passes ``body`` its own ``scratch`` dict, for reused
    buffers and partial sums. While the workers run, NumPy's BLAS is set to one thread (so the
    threads do not oversubscribe the cores) and restored afterwards. Runs the tasks in order
    on the calling thread when there is one worker, on CuPy, or when another thread is already
    inside a parallel region.

    Returns:
        The scratch dicts, one per worker that ran.
    """
    workers = min(num_threads(xp), n_tasks)
    if workers <= 1 or not _Threads.lock.acquire(blocking=False):
        scratch: dict = {}
        for i in range(n_tasks):
            body(i, scratch)
        return [scratch]
    try:
        libs = _blas_controllers(xp)
        before = [lib.get_num_threads() for lib in libs]
        for lib in libs:
            lib.set_num_threads(1)
        try:
            if _Threads.executor is None or _Threads.size < workers - 1:
                if _Threads.executor is not None:
                    _Threads.executor.shutdown(wait=True)
                _Threads.executor = ThreadPoolExecutor(workers - 1, thread_name_prefix="gradcraft-ops")
                _Threads.size = workers - 1
            counter = itertools.count()
            counter_lock = threading.Lock()

            def worker() -> dict:
                local: dict = {}
                while True:
                    with counter_lock:
                        i = next(counter)
                    if i >= n_tasks:
                        return local
                    body(i, local)

            futures = [_Threads.executor.submit(worker) for _ in range(workers - 1)]
            try:
                results = [worker()]
            finally:
                wait_all(futures)
            return results + [f.result() for f in futures]
        finally:
            for lib, n in zip(libs, before):
                lib.set_num_threads(n)
    finally:
        _Threads.lock.release()


def parallel_sum(
    xp: Any, n_items: int, body: Callable[[int, dict], Sequence[Any]], terms: int
) -> list[Any]:
    """Σ over ``i`` in ``range(n_items)`` of the ``terms`` arrays ``body(i, scratch)`` returns, on
    the worker threads, with the same rounding whatever the thread timing.

    The items are cut into consecutive groups (:data:`BLOCKS_PER_WORKER` per worker thread); a
    group adds its items' partials in item order, and the group sums are added pairwise along
    a fixed binary tree, each pair as soon as both halves are done. The result depends only
    on the thread count, not on which thread ran what (a resumed run then repeats an
    uninterrupted one bit for bit), and however the threads are scheduled at most one
    waiting partial per tree level is alive. ``body`` must return fresh arrays (they are
    added to in place) or None for a term it has not got.

    Returns:
        The ``terms`` sums; None where every item returned None (or there were no items).
    """
    threads = num_threads(xp)
    count = 1 if threads <= 1 else max(1, min(n_items, BLOCKS_PER_WORKER * threads))
    bounds = [n_items * k // count for k in range(count + 1)]
    widths = [count]  # nodes per tree level, leaves first
    while widths[-1] > 1:
        widths.append((widths[-1] + 1) // 2)
    waiting: dict[tuple[int, int], list[Any]] = {}  # (level, index) → a sum whose sibling is not done
    total: list[Any] = [None] * terms
    lock = threading.Lock()

    def run_group(g: int, scratch: dict) -> None:
        acc: list[Any] = [None] * terms
        for i in range(bounds[g], bounds[g + 1]):
            _accumulate(acc, body(i, scratch))
        level, index = 0, g
        with lock:
            while level + 1 < len(widths):
                sibling = index ^ 1
                if sibling < widths[level]:
                    if (level, sibling) not in waiting:
                        waiting[level, index] = acc
                        return
                    other = waiting.pop((level, sibling))
                    left, right = (acc, other) if index < sibling else (other, acc)
                    _accumulate(left, right)
                    acc = left
                level, index = level + 1, index // 2
            total[:] = acc

    parallel_for(xp, count, run_group)
    return total


def _accumulate(acc: list[Any], parts: Sequence[Any]) -> None:
    """acc[k] += parts[k] in place for every k (None terms are skipped)."""
    for k, part in enumerate(parts):
        if part is None:
            continue
        if acc[k] is None:
            acc[k] = part
        else:
            acc[k] += part


# ---------------------------------------------------------------------------- im2col / col2im
def im2col_block(win: Any, block: Block, groups: int, scratch: dict) -> Any:
    """Copy the receptive fields of one block of output rows into a column matrix.

    Args:
        win: (N, H_out, W_out, kH, kW, C) strided view of the receptive fields.
        block: ``(n0, n1, h0, h1)``, output rows ``win[n0:n1, h0:h1]``.
        scratch: per-thread dict; its ``"cols"`` buffer is reused across blocks.

    Returns:
        (G, rows, K_g) columns, rows = (n1 − n0)·(h1 − h0)·W_out, K_g ordered (kH, kW, C_g).
    """
    xp = get_array_module(win)
    n0, n1, h0, h1 = block
    _, _, wo, kh, kw, c = win.shape
    cg = c // groups
    rows, kg = (n1 - n0) * (h1 - h0) * wo, kh * kw * cg
    size = groups * rows * kg
    storage = scratch.get("cols")
    if storage is None or storage.size < size or storage.dtype != win.dtype:
        storage = scratch["cols"] = xp.empty(size, dtype=win.dtype)
    cols = storage[:size].reshape(groups, rows, kg)
    if c == 1:
        # one copy per kernel tap: NumPy copies a 6-D view whose innermost axis has length 1
        # element by element, about 3× slower than these (the first layer of a grayscale net)
        taps = cols.reshape(n1 - n0, h1 - h0, wo, kh, kw)
        for p in range(kh):
            for q in range(kw):
                taps[:, :, :, p, q] = win[n0:n1, h0:h1, :, p, q, 0]
        return cols
    src = win[n0:n1, h0:h1].reshape(n1 - n0, h1 - h0, wo, kh, kw, groups, cg)
    cols.reshape(groups, n1 - n0, h1 - h0, wo, kh, kw, cg)[...] = src.transpose(5, 0, 1, 2, 3, 4, 6)
    return cols


def im2col_reader(
    x: Any,
    out_hw: IntPair,
    kernel: IntPair,
    stride: IntPair,
    dilation: IntPair,
    pads: tuple[IntPair, IntPair],
    groups: int,
) -> Callable[[Block, dict], Any]:
    """A function ``columns(block, scratch)`` that writes the (G, rows, K_g) im2col columns of
    one block of output rows of the convolution of ``x`` (N, C, H, W) into a reused buffer of
    ``scratch`` and returns them (K_g ordered (kH, kW, C_g), as :func:`im2col_block`).

    With the compiled kernels the columns are read from ``x`` itself, in whatever memory order
    it has (for one input channel tap by tap, :func:`gradcraft.ops.kernels.im2col.im2col_taps`,
    into a transposed buffer that the GEMMs read as it is), and the taps in the padding are
    written as zeros, so no copy of ``x`` is ever made: neither a padded one nor, for a data
    batch in NCHW order, a channels-last one (a 3-channel stem layer at batch 32–128:
    0.83–0.90× the time of copying first; NCHW inputs with 16–64 channels: 0.94–1.01×).
    Otherwise ``x`` is copied once into a zero-padded channels-last buffer whose windows
    :func:`im2col_block` copies.
    """
    xp = get_array_module(x)
    c = x.shape[1]
    fast = accel.kernels("im2col", x)
    if fast is None:
        win = _windows(channels_last_padded(x, pads), out_hw, kernel, stride, dilation)

        def copy_windows(block: Block, scratch: dict) -> Any:
            return im2col_block(win, block, groups, scratch)

        return copy_windows
    src = x.transpose(0, 2, 3, 1)  # (N, H, W, C), a view in any memory order
    wo = out_hw[1]
    kg = kernel[0] * kernel[1] * (c // groups)

    geometry = (*kernel, *stride, *dilation, pads[0][0], pads[1][0])

    def read_input(block: Block, scratch: dict) -> Any:
        n0, n1, h0, h1 = block
        rows = (n1 - n0) * (h1 - h0) * wo
        cols = _scratch_array(xp, scratch, "cols", (groups, rows, kg), x.dtype)
        fast.im2col(src, n0, n1, h0, h1, wo, *geometry, cols)
        return cols

    def read_input_by_tap(block: Block, scratch: dict) -> Any:
        n0, n1, h0, h1 = block
        rows = (n1 - n0) * (h1 - h0) * wo
        cols_t = _scratch_array(xp, scratch, "cols", (groups, kg, rows), x.dtype)
        fast.im2col_taps(src, n0, n1, h0, h1, wo, *geometry, cols_t)
        return cols_t.transpose(0, 2, 1)  # BLAS reads the transposed view as it is

    return read_input_by_tap if c == 1 else read_input


def col2im_block(
    dx: Any,
    dwin: Any,
    block: Block,
    kernel: IntPair,
    stride: IntPair,
    dilation: IntPair,
    pads: tuple[IntPair, IntPair],
) -> None:
    """Add the window gradients of one block back onto the input grid (the adjoint of im2col).

    Args:
        dx: (N, H, W, G, C_g) channels-last input gradient, accumulated in place.
        dwin: (n1 − n0, h1 − h0, W_out, kH, kW, G, C_g) gradient of every receptive field of
            the output rows ``block = (n0, n1, h0, h1)``.

    For each of the kH·kW kernel offsets (p, q) this is one strided add,
    ``dX[n, i·s + p·d − pad, j·s + q·d − pad] += dwin[n, i, j, p, q]``, over the (i, j) whose input
    position falls inside the image (contributions to padding are dropped); no scatter.
    """
    n0, n1, h0, h1 = block
    h, w = dx.shape[1], dx.shape[2]
    wo = dwin.shape[2]
    for p in range(kernel[0]):
        i_lo, i_hi, r0 = _valid_range(h, h1, p, stride[0], dilation[0], pads[0][0])
        if i_lo < h0:
            r0 += (h0 - i_lo) * stride[0]
            i_lo = h0
        if i_hi <= i_lo:
            continue
        hs = slice(r0, r0 + (i_hi - i_lo - 1) * stride[0] + 1, stride[0])
        for q in range(kernel[1]):
            j_lo, j_hi, c0 = _valid_range(w, wo, q, stride[1], dilation[1], pads[1][0])
            if j_hi <= j_lo:
                continue
            ws = slice(c0, c0 + (j_hi - j_lo - 1) * stride[1] + 1, stride[1])
            dx[n0:n1, hs, ws] += dwin[:, i_lo - h0 : i_hi - h0, j_lo:j_hi, p, q]


# ---------------------------------------------------------------------------- Winograd F(2×2, 3×3)
#: 3×3, stride-1, undilated, ungrouped convolutions with at least this many input channels use
#: Winograd's minimal filtering instead of im2col (below it, im2col's GEMM is tiny anyway).
WINOGRAD_MIN_CHANNELS = 8

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), F(2×2, 3×3):
#   Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A  for a 4×4 input tile d and a 3×3 filter g, giving a 2×2 tile,
#   Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]],
#   G  = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]],
#   Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]].
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))

#: Bytes of transformed tiles (V and M) per Winograd block. Larger than :data:`BLOCK_BYTES`:
#: a block costs about 25 NumPy calls, so small blocks spend their time in call overhead.
WINOGRAD_BLOCK_BYTES = 4 * 1024 * 1024


def _scratch_array(xp: Any, scratch: dict, key: str, shape: tuple[int, ...], dtype: Any) -> Any:
    """A (reused, per-thread) uninitialized array of ``shape`` kept in ``scratch[key]``."""
    size = 1
    for s in shape:
        size *= s
    store = scratch.get(key)
    if store is None or store.size < size or store.dtype != dtype:
        store = scratch[key] = xp.empty(size, dtype=dtype)
    return store[:size].reshape(shape)


#: Elements of slack after each plane of :func:`_planes` (one 64-byte cache line of float32).
PLANE_PAD = 16


def _planes(xp: Any, scratch: dict, key: str, shape: tuple[int, int, int], dtype: Any) -> Any:
    """A reused per-thread ``(P, R, C)`` scratch array whose planes are ``R·C + PLANE_PAD``
    elements apart.

    The Winograd kernels stream all 16 planes at once; planes a multiple of 4 KiB apart (as
    (16, 256, 128) float32 ones are) all map to the same L1 cache sets and evict each other,
    which made the tile transforms of 7×7×128 layers ~6× slower. Each plane stays C-contiguous.
    """
    p, r, c = shape
    flat = _scratch_array(xp, scratch, key, (p, r * c + PLANE_PAD), dtype)
    return flat[:, : r * c].reshape(p, r, c)


def _strided(xp: Any, a: Any, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any:
    if xp.__name__ == "numpy":  # read-only, so a stray write cannot corrupt the source
        return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides, writeable=False)
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


def _tiles(xp: Any, buf: Any, block: Block, tw: int, size: int) -> Any:
    """(n1 − n0, t1 − t0, tw, size, size, C) view of the size×size tiles, 2 apart, of tile rows
    [t0, t1) of ``buf`` (N, H, W, C)."""
    n0, n1, t0, t1 = block
    base = buf[n0:n1, 2 * t0 :]
    sn, sh, sw, sc = base.strides
    shape = (n1 - n0, t1 - t0, tw, size, size, buf.shape[3])
    return _strided(xp, base, shape, (sn, 2 * sh, 2 * sw, sh, sw, sc))


def _bt(xp: Any, d: list[Any], out: list[Any]) -> None:
    """out = Bᵀ d along one axis of the 4×4 tile (d, out: the four slices along that axis)."""
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])


def _at(xp: Any, m: list[Any], out: list[Any]) -> None:
    """out = Aᵀ m along one axis (four slices in, two out)."""
    xp.add(m[0], m[1], out=out[0])
    out[0] += m[2]
    xp.subtract(m[1], m[2], out=out[1])
    out[1] -= m[3]


def _a(xp: Any, g: list[Any], out: list[Any]) -> None:
    """out = A g along one axis (two slices in, four out): the adjoint of :func:`_at`."""
    out[0][...] = g[0]
    xp.add(g[0], g[1], out=out[1])
    xp.subtract(g[0], g[1], out=out[2])
    xp.negative(g[1], out=out[3])


def winograd_weights(w: Any) -> Any:
    """U = G w Gᵀ for every (out, in) filter pair: (C_out, C_in, 3, 3) → (16, C_in, C_out)."""
    xp = get_array_module(w)
    g = xp.asarray(_G, dtype=w.dtype)
    o, c = w.shape[0], w.shape[1]
    # U[ab, (c, o)] = Σ_pq (G ⊗ G)[ab, pq] w[o, c, p, q]: one (16, 9) × (9, C_in·C_out) GEMM
    k = xp.kron(g, g)
    wt = xp.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(9, c * o)
    return (k @ wt).reshape(16, c, o)


def _winograd_input(xp: Any, d: Any, scratch: dict) -> Any:
    """V = Bᵀ d B for tiles d (nb, tb, tw, 4, 4, C) → (16, nb·tb·tw, C), in 8 vectorised passes."""
    nb, tb, tw, _, _, c = d.shape
    rows = _scratch_array(xp, scratch, "w_rows", (4, nb, tb, tw, 4, c), d.dtype)
    _bt(xp, [d[:, :, :, k] for k in range(4)], [rows[k] for k in range(4)])
    v = _scratch_array(xp, scratch, "w_v", (4, 4, nb, tb, tw, c), d.dtype)
    _bt(xp, [rows[:, :, :, :, k] for k in range(4)], [v[:, k] for k in range(4)])
    return v.reshape(16, nb * tb * tw, c)


def _winograd_output(xp: Any, m: Any, dst: Any, scratch: dict) -> None:
    """dst = Aᵀ m A: m (16, T, C_out) → 2×2 output tiles dst (nb, tb, 2, tw, 2, C_out)."""
    nb, tb, _, tw, _, o = dst.shape
    m = m.reshape(4, 4, nb, tb, tw, o)
    rows = _scratch_array(xp, scratch, "w_out", (2, 4, nb, tb, tw, o), m.dtype)
    _at(xp, [m[k] for k in range(4)], [rows[0], rows[1]])
    # dst[:, :, a, :, b] for both a at once, as an (a, nb, tb, tw, C_out) view
    cols = [dst[:, :, :, :, b].transpose(2, 0, 1, 3, 4) for b in range(2)]
    _at(xp, [rows[:, k] for k in range(4)], cols)


def _winograd_output_adjoint(xp: Any, g: Any, scratch: dict) -> Any:
    """dM = A g Aᵀ: output-tile gradients g (nb, tb, tw, 2, 2, C_out) → (16, T, C_out)."""
    nb, tb, tw, _, _, o = g.shape
    rows = _scratch_array(xp, scratch, "w_grows", (4, nb, tb, tw, 2, o), g.dtype)
    _a(xp, [g[:, :, :, 0], g[:, :, :, 1]], [rows[k] for k in range(4)])
    dm = _scratch_array(xp, scratch, "w_dm", (4, 4, nb, tb, tw, o), g.dtype)
    _a(xp, [rows[:, :, :, :, 0], rows[:, :, :, :, 1]], [dm[:, k] for k in range(4)])
    return dm.reshape(16, nb * tb * tw, o)


def _tile_source(src: Any, offsets: IntPair, tiles_hw: IntPair) -> Any:
    """What the NumPy path's tile views read: ``src`` (N, H, W, C) zero-padded by ``offsets``
    (top, left) and at the bottom and right as far as the tiles reach (no copy when no
    padding is needed)."""
    (pt, pl), (th, tw) = offsets, tiles_hw
    bottom = max(0, 2 * th + 2 - pt - src.shape[1])
    right = max(0, 2 * tw + 2 - pl - src.shape[2])
    return channels_last_padded(src.transpose(0, 3, 1, 2), ((pt, bottom), (pl, right)))


def winograd_conv(
    src: Any, offsets: IntPair, u: Any, tiles_hw: IntPair, out_hw: IntPair, bias: Any = None
) -> Any:
    """3×3 stride-1 correlation of a C-contiguous channels-last ``src`` (N, H, W, C), zero-padded
    by ``offsets`` = (top, left) rows and columns and as needed at the bottom and right, with
    transformed filters ``u`` (16, C, C_out): returns the C-contiguous channels-last output
    (N, H_out, W_out, C_out) of the t_h × t_w tiles, ``out_hw`` = (H_out, W_out), each 2·t − 1
    or 2·t (an odd size drops the last row or column of tiles' outputs).

    Per block of tile rows: V = Bᵀ d B (16 × (T, C)), M = V @ U (16 GEMMs), bias added to the
    M entry that reaches every output of a tile, Y = Aᵀ M A written straight into the output
    (the NumPy path writes an odd-sized output through a full-tile temporary).
    The compiled tile transform reads the padding as zeros; the NumPy path pads a copy.
    """
    xp = get_array_module(src)
    n, c = src.shape[0], src.shape[3]
    th, tw = tiles_hw
    o = u.shape[2]
    out = xp.empty((n, *out_hw, o), dtype=src.dtype)
    tile_bytes = 16 * (c + o) * src.itemsize
    budget = block_budget(xp, n * th * tw * tile_bytes, WINOGRAD_BLOCK_BYTES)
    blocks = [blk for unit in blocks_of(n, th, tw, tile_bytes, budget) for blk in unit]
    fast = accel.kernels("winograd", src, u)
    if fast is not None:
        shift = xp.zeros(o, dtype=src.dtype) if bias is None else bias.astype(src.dtype, copy=False)

        def compiled_body(i: int, scratch: dict) -> None:
            n0, n1, t0, t1 = blocks[i]
            v = _planes(xp, scratch, "w_v", (16, (n1 - n0) * (t1 - t0) * tw, c), src.dtype)
            fast.input_transform(src, offsets[0], offsets[1], n0, n1, t0, t1, tw, v)
            m = _planes(xp, scratch, "w_m", (16, v.shape[1], o), src.dtype)
            matmul_into(xp, v, u, m)
            fast.output_transform(m, shift, n0, n1, t0, t1, tw, out)

        parallel_for(xp, len(blocks), compiled_body)
        return out
    buf = _tile_source(src, offsets, tiles_hw)
    full = out if out_hw == (2 * th, 2 * tw) else xp.empty((n, 2 * th, 2 * tw, o), dtype=src.dtype)

    def body(i: int, scratch: dict) -> None:
        n0, n1, t0, t1 = blocks[i]
        v = _winograd_input(xp, _tiles(xp, buf, blocks[i], tw, 4), scratch)
        m = _scratch_array(xp, scratch, "w_m", (16, v.shape[1], o), buf.dtype)
        matmul_into(xp, v, u, m)
        if bias is not None:
            m[5] += bias  # Aᵀ e₁ = (1, 1): entry (1, 1) of M adds to all four outputs
        dst = full[n0:n1, 2 * t0 : 2 * t1].reshape(n1 - n0, t1 - t0, 2, tw, 2, o)
        _winograd_output(xp, m, dst, scratch)

    parallel_for(xp, len(blocks), body)
    if full is not out:
        out[...] = full[:, : out_hw[0], : out_hw[1]]
    return out


def winograd_filter_grad(src: Any, offsets: IntPair, gbuf: Any, tiles_hw: IntPair) -> tuple[Any, Any]:
    """Gradients of the filters and bias of :func:`winograd_conv`.

    Args:
        src, offsets: the input and padding it was called with.
        gbuf: (N, H_out, W_out, C_out) C-contiguous channels-last output gradient, each size
            2·t − 1 or 2·t (read as zero beyond an odd size).

    Returns:
        dUᵀ (16, C_out, C) = Σ_tiles (A g Aᵀ)ᵀ V (16 GEMMs per block; the transpose of dU, the
        order the GEMMs run faster in and :func:`winograd_weight_grad` takes) and db = Σ g.
    """
    xp = get_array_module(src)
    n, c = src.shape[0], src.shape[3]
    th, tw = tiles_hw
    o = gbuf.shape[3]
    tile_bytes = 16 * (c + o) * src.itemsize
    budget = block_budget(xp, n * th * tw * tile_bytes, WINOGRAD_BLOCK_BYTES)
    blocks = [blk for unit in blocks_of(n, th, tw, tile_bytes, budget) for blk in unit]
    fast = accel.kernels("winograd", src, gbuf)
    buf = gpad = None
    if fast is None:
        buf = _tile_source(src, offsets, tiles_hw)
        gpad = _tile_source(gbuf, (0, 0), (th - 1, tw - 1))  # zero row/column past an odd size

    def body(i: int, scratch: dict) -> tuple[Any, Any]:
        if fast is not None:
            n0, n1, t0, t1 = blocks[i]
            rows = (n1 - n0) * (t1 - t0) * tw
            v = _planes(xp, scratch, "w_v", (16, rows, c), src.dtype)
            fast.input_transform(src, offsets[0], offsets[1], n0, n1, t0, t1, tw, v)
            dm = _planes(xp, scratch, "w_dm", (16, rows, o), gbuf.dtype)
            fast.output_adjoint(gbuf, n0, n1, t0, t1, tw, dm)
        else:
            v = _winograd_input(xp, _tiles(xp, buf, blocks[i], tw, 4), scratch)
            dm = _winograd_output_adjoint(xp, _tiles(xp, gpad, blocks[i], tw, 2), scratch)
        # (16, C_out, C): this order runs faster
        return xp.matmul(dm.transpose(0, 2, 1), v), dm[5].sum(axis=0)

    du, db = parallel_sum(xp, len(blocks), body, 2)
    if n == 0:  # an empty batch: no blocks, so nothing was summed
        du, db = xp.zeros((16, o, c), dtype=src.dtype), xp.zeros(o, dtype=src.dtype)
    return du, db


def winograd_weight_grad(du_t: Any, out_channels: int, in_channels: int) -> Any:
    """dW = Gᵀ dU G, the adjoint of :func:`winograd_weights`: dUᵀ (16, C_out, C_in) →
    (C_out, C_in, 3, 3), as one (C_out·C_in, 16) @ (16, 9) GEMM that reads dUᵀ transposed
    in place and writes dW in its final order (no copies)."""
    xp = get_array_module(du_t)
    g = xp.asarray(_G, dtype=du_t.dtype)
    flat = xp.ascontiguousarray(du_t).reshape(16, out_channels * in_channels)
    return (flat.T @ xp.kron(g, g)).reshape(out_channels, in_channels, 3, 3)


def _block_rows(block: Block, ho: int, wo: int) -> tuple[int, int]:
    n0, n1, h0, h1 = block
    start = (n0 * ho + h0) * wo
    return start, start + (n1 - n0) * (h1 - h0) * wo


# ---------------------------------------------------------------------------- the op
class Conv2d(Function):
    """y = conv2d(x, w, b): cross-correlation over NCHW input.

    Shapes: x (N, C_in, H, W), w (C_out, C_in/groups, kH, kW), b (C_out,) or None,
    y (N, C_out, H_out, W_out) with channels-last strides. Three strategies, picked from the
    shapes (see the module docstring): a single GEMM for 1×1 stride-1 convolutions, Winograd
    F(2×2, 3×3) for 3×3 stride-1 ones with ≥ :data:`WINOGRAD_MIN_CHANNELS` input channels, and
    blocked im2col + GEMM for everything else.
    """

    def forward(
        self,
        x: Any,
        w: Any,
        b: Any = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
    ) -> Any:
        xp = get_array_module(x, w)
        if getattr(x, "ndim", 0) != 4:
            raise ValueError(
                f"Expected input of shape (N, C_in, H, W). Received: input.shape={getattr(x, 'shape', None)}"
            )
        if getattr(w, "ndim", 0) != 4:
            raise ValueError(
                f"Expected weight of shape (C_out, C_in/groups, kH, kW). Received: weight.shape={w.shape}"
            )
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ValueError(f"Expected groups to be a positive int. Received: groups={groups!r}")
        _, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        if c != cg * groups:
            raise ValueError(
                f"Expected input with C_in = groups × weight.shape[1] = {groups} × {cg} = {cg * groups} "
                f"channels. Received: input.shape={x.shape}, weight.shape={w.shape}"
            )
        if o % groups:
            raise ValueError(
                f"Expected out_channels divisible by groups. "
                f"Received: weight.shape={w.shape}, groups={groups}"
            )
        if b is not None and tuple(b.shape) != (o,):
            raise ValueError(f"Expected bias of shape ({o},). Received: bias.shape={b.shape}")
        stride = pair(stride, "stride")
        dilation = pair(dilation, "dilation")
        kernel = (kh, kw)
        pads = _padding(padding, kernel, stride, dilation)
        ho = conv_output_size(h, kh, stride[0], sum(pads[0]), dilation[0])
        wo = conv_output_size(wd, kw, stride[1], sum(pads[1]), dilation[1])
        if ho < 1 or wo < 1:
            raise ValueError(
                f"Expected the dilated kernel to fit the padded input. Received: input.shape={x.shape}, "
                f"kernel_size={kernel}, dilation={dilation}, padding={pads} (output would be {ho}×{wo})"
            )
        dtype = xp.result_type(x, w)
        x = x.astype(dtype, copy=False)
        w = w.astype(dtype, copy=False)
        if kernel == (1, 1) and stride == (1, 1) and pads == ((0, 0), (0, 0)):
            self.mode = "pointwise"
        elif (
            kernel == (3, 3)
            and stride == (1, 1)
            and dilation == (1, 1)
            and groups == 1
            and c >= WINOGRAD_MIN_CHANNELS
            and max(*pads[0], *pads[1]) <= 2
        ):
            self.mode = "winograd"
        else:
            self.mode = "im2col"
        self.geometry = (x.shape, (ho, wo), kernel, stride, dilation, pads, groups)
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        if self.mode == "winograd":
            return self._winograd_forward(x, w, b, need_x, need_w)
        return self._gemm_forward(x, w, b, need_x, need_w)

    def backward(self, grad: Any) -> tuple[Any, Any, Any]:
        if self.mode == "winograd":
            return self._winograd_backward(grad)
        return self._gemm_backward(grad)

    # ------------------------------------------------------------------ im2col and 1×1
    def _gemm_forward(self, x: Any, w: Any, b: Any, need_x: bool, need_w: bool) -> Any:
        xp = get_array_module(x)
        (n, _, _, _), (ho, wo), kernel, stride, dilation, pads, groups = self.geometry
        o, cg, kh, kw = w.shape
        og, m, kg = o // groups, n * ho * wo, kh * kw * cg
        # weight as (G, K_g, C_out/G), K ordered (kH, kW, C_g) like the columns
        wmat = w.reshape(groups, og, cg, kh, kw).transpose(0, 3, 4, 2, 1).reshape(groups, kg, og)
        out = xp.empty((m, o), dtype=x.dtype)
        if self.mode == "pointwise":
            buf = channels_last_padded(x, pads)  # no padding: no copy when channels-last
            cols = buf.reshape(m, groups, cg).transpose(1, 0, 2)  # (G, M, C_g) view, no copy
            matmul_into(xp, cols, wmat, out.reshape(m, groups, og).transpose(1, 0, 2))
            if b is not None:
                out += b
        else:
            columns = im2col_reader(x, (ho, wo), kernel, stride, dilation, pads, groups)
            budget = block_budget(xp, m * groups * kg * x.itemsize, BLOCK_BYTES)
            units = blocks_of(n, ho, wo, groups * kg * x.itemsize, budget)
            blocks = [blk for unit in units for blk in unit]

            def forward_block(i: int, scratch: dict) -> None:
                cols = columns(blocks[i], scratch)
                m0, m1 = _block_rows(blocks[i], ho, wo)
                part = out[m0:m1]
                matmul_into(xp, cols, wmat, part.reshape(m1 - m0, groups, og).transpose(1, 0, 2))
                if b is not None:
                    part += b

            parallel_for(xp, len(blocks), forward_block)
        # the input, not its padded channels-last copy (see the module docstring)
        self.save_for_backward(x if need_w else None, wmat if need_x else None)
        return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2)

    def _gemm_backward(self, grad: Any) -> tuple[Any, Any, Any]:
        xp = get_array_module(grad)
        x, wmat = self.saved
        (n, c, h, wd), (ho, wo), kernel, stride, dilation, pads, groups = self.geometry
        kh, kw = kernel
        o = grad.shape[1]
        og, cg = o // groups, c // groups
        kg = kh * kw * cg
        m = n * ho * wo
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]

        g2 = grad.transpose(0, 2, 3, 1).reshape(m, o)  # free when grad is channels-last

        def per_group(rows: Any) -> Any:  # (rows, C_out) -> (G, rows, C_out/G) view
            return rows.reshape(rows.shape[0], groups, og).transpose(1, 0, 2)

        dx = dw = db = None
        if self.mode == "pointwise":
            gg = per_group(g2)
            if need_b:
                db = sum_rows(g2)
            if need_w:
                buf = channels_last_padded(x, pads)  # no padding: no copy when channels-last
                dwmat = xp.matmul(buf.reshape(m, groups, cg).transpose(1, 2, 0), gg)
            if need_x:
                dxg = xp.empty((m, groups, cg), dtype=grad.dtype)
                matmul_into(xp, gg, wmat.transpose(0, 2, 1), dxg.transpose(1, 0, 2))
                dx = dxg.reshape(n, h, wd, c).transpose(0, 3, 1, 2)
        else:
            columns = im2col_reader(x, (ho, wo), kernel, stride, dilation, pads, groups) if need_w else None
            dxg = xp.empty((n, h, wd, groups, cg), dtype=grad.dtype) if need_x else None
            budget = block_budget(xp, m * groups * kg * grad.itemsize, BLOCK_BYTES)
            units = blocks_of(n, ho, wo, groups * kg * grad.itemsize, budget)
            wmat_t = wmat.transpose(0, 2, 1) if need_x else None
            fast = accel.kernels("im2col", grad) if need_x else None

            def backward_unit(i: int, scratch: dict) -> list[Any]:
                sums: list[Any] = [None]  # dW of this unit's blocks, in block order
                for blk in units[i]:
                    n0, n1, h0, h1 = blk
                    m0, m1 = _block_rows(blk, ho, wo)
                    gg = per_group(g2[m0:m1])
                    dw_part = None
                    if need_w:
                        cols = columns(blk, scratch)
                        dw_part = xp.matmul(cols.transpose(0, 2, 1), gg)  # (G, K_g, C_out/G)
                    _accumulate(sums, (dw_part,))
                    if need_x:
                        if h0 == 0:
                            dxg[n0:n1] = 0
                        dcols = xp.matmul(gg, wmat_t)  # (G, rows, K_g)
                        if fast is not None:
                            fast.col2im(
                                dcols, *blk, wo, *kernel, *stride, *dilation, pads[0][0], pads[1][0],
                                dxg.reshape(n, h, wd, c),
                            )
                            continue
                        dwin = dcols.reshape(groups, n1 - n0, h1 - h0, wo, kh, kw, cg)
                        dwin = dwin.transpose(1, 2, 3, 4, 5, 0, 6)
                        col2im_block(dxg, dwin, blk, kernel, stride, dilation, pads)
                return sums

            (dwmat,) = parallel_sum(xp, len(units), backward_unit, 1)
            # one product over all rows, outside the worker threads (BLAS's matrix-vector
            # product runs 3× slower there, called by two threads at once)
            db = sum_rows(g2) if need_b else None
            if n == 0:  # an empty batch: no blocks, so nothing was summed
                dwmat = xp.zeros((groups, kg, og), dtype=grad.dtype) if need_w else None
            if need_x:
                dx = dxg.reshape(n, h, wd, c).transpose(0, 3, 1, 2)
        if need_w:
            dw = xp.ascontiguousarray(dwmat.transpose(0, 2, 1).reshape(o, kh, kw, cg).transpose(0, 3, 1, 2))
        return dx, dw, db

    # ------------------------------------------------------------------ Winograd
    def _winograd_forward(self, x: Any, w: Any, b: Any, need_x: bool, need_w: bool) -> Any:
        _, (ho, wo), _, _, _, ((pt, _), (pl, _)), _ = self.geometry
        # tiles of 2×2 outputs; an odd output size gets one more zero row/column of input
        tiles = ((ho + 1) // 2, (wo + 1) // 2)
        # no copy when x is channels-last (a convolution's, batch norm's or ReLU's output);
        # the padding is read as zeros by the tile transform
        src = channels_last_padded(x, ((0, 0), (0, 0)))
        out = winograd_conv(src, (pt, pl), winograd_weights(w), tiles, (ho, wo), b)
        # x itself when src is a view of it, so that a rebuildable input is not kept
        self.src_is_view = src.base is not None and src.base is (x if x.base is None else x.base)
        self.save_for_backward((x if self.src_is_view else src) if need_w else None, w if need_x else None)
        return out.transpose(0, 3, 1, 2)

    def _winograd_backward(self, grad: Any) -> tuple[Any, Any, Any]:
        src, w = self.saved
        (_, c, h, wd), (ho, wo), _, _, _, ((pt, _), (pl, _)), _ = self.geometry
        o = grad.shape[1]
        need_x, need_w = self.needs_input_grad[0], self.needs_input_grad[1]
        need_b = len(self.needs_input_grad) > 2 and self.needs_input_grad[2]
        # dX is the "full" correlation of dY with the flipped, transposed filters: a 3×3
        # stride-1 convolution of dY padded by 2 − pad, which is Winograd again (the tile
        # transform reads that padding as zeros). dY's 2×2 tiles give the output-tile
        # gradients for dW (zero beyond the output when its size is odd).
        g = channels_last_padded(grad, ((0, 0), (0, 0)))  # no copy when channels-last
        dx = dw = db = None
        if need_x:
            flipped = w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_in, C_out, 3, 3)
            dx_tiles = ((h + 1) // 2, (wd + 1) // 2)
            dx = winograd_conv(g, (2 - pt, 2 - pl), winograd_weights(flipped), dx_tiles, (h, wd))
            dx = dx.transpose(0, 3, 1, 2)
        if need_w or need_b:
            tiles = ((ho + 1) // 2, (wo + 1) // 2)
            if need_w:
                if self.src_is_view:
                    src = channels_last_padded(src, ((0, 0), (0, 0)))
                du, db = winograd_filter_grad(src, (pt, pl), g, tiles)
                dw = winograd_weight_grad(du, o, c)
            else:
                db = sum_rows(g.reshape(-1, o))
        return dx, dw, db if need_b else None


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | IntPair = 1,
    padding: int | IntPair | str = 0,
    dilation: int | IntPair = 1,
    groups: int = 1,
) -> Tensor:
    """2-D cross-correlation, as PyTorch's ``torch.nn.functional.conv2d``.

    Args:
        x: (N, C_in, H, W) input.
        weight: (C_out, C_in / groups, kH, kW) filters.
        bias: (C_out,) or None.
        stride: step of the window, int or (s_h, s_w).
        padding: zeros added on each side, int or (p_h, p_w), or ``"valid"`` / ``"same"``.
        dilation: spacing between kernel taps, int or (d_h, d_w).
        groups: split input and output channels into this many independent convolutions
            (``groups == C_in`` is a depthwise convolution).

    Returns:
        (N, C_out, H_out, W_out) with H_out = ⌊(H + 2p_h − d_h(kH − 1) − 1) / s_h⌋ + 1 (likewise
        W_out); its memory order is channels-last (see the module docstring).

    Raises:
        ValueError: "Expected … Received: …" naming the shapes that do not fit.
    """
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)
