import itertools
import time
import tracemalloc

import numpy as np
import pytest

import gradcraft as gc
from gradcraft.autograd import gradcheck
from gradcraft.ops import accel
from gradcraft.ops import conv as conv_mod
from gradcraft.ops.conv import conv2d, conv_output_size
from tests.ops._cases import compare_with_torch, torch_or_none

torch = torch_or_none()
needs_torch = pytest.mark.skipif(torch is None, reason="parity tests need PyTorch (pip install torch==2.13.0)")

# (x shape, weight shape, stride, padding, dilation, groups, bias)
CONFIGS = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1, True),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, 1, False),
    ((2, 2, 7, 6), (3, 2, 3, 2), 2, 1, 1, 1, True),
    ((1, 2, 6, 7), (2, 2, 2, 3), (2, 1), (1, 2), 1, 1, True),
    ((2, 2, 7, 7), (3, 2, 3, 3), 1, 2, 2, 1, True),
    ((1, 2, 8, 7), (2, 2, 2, 3), 2, 1, (2, 1), 1, False),
    ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2, True),
    ((2, 4, 5, 4), (4, 1, 3, 3), 1, 1, 1, 4, True),
    ((2, 3, 4, 5), (5, 3, 1, 1), 1, 0, 1, 1, True),
    ((2, 4, 5, 5), (4, 2, 1, 1), 2, 0, 1, 2, True),
    ((1, 2, 6, 5), (3, 2, 3, 3), 3, 0, 1, 1, True),
    ((2, 2, 5, 6), (3, 2, 2, 3), 1, "same", 1, 1, True),
    ((1, 2, 7, 7), (2, 2, 3, 3), 1, "same", 2, 1, False),
    ((1, 2, 4, 5), (2, 2, 3, 3), 1, "valid", 1, 1, True),
    # one input channel: im2col copies tap by tap
    ((2, 1, 6, 7), (3, 1, 3, 3), 1, 1, 1, 1, True),
    ((2, 1, 7, 6), (2, 1, 3, 2), 2, 1, (1, 2), 1, False),
]


def _ids(cfg):
    x, w, s, p, d, g, b = cfg
    return f"x{x}-w{w}-s{s}-p{p}-d{d}-g{g}-{'bias' if b else 'nobias'}"


def _inputs(cfg, seed=0):
    x_shape, w_shape, *_, bias = cfg
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(x_shape), rng.standard_normal(w_shape)]
    if bias:
        arrays.append(rng.standard_normal(w_shape[0]))
    return arrays


def _ours(cfg):
    _, _, s, p, d, g, _ = cfg
    return lambda x, w, b=None: conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)


def _theirs(cfg):
    _, _, s, p, d, g, _ = cfg
    return lambda x, w, b=None: torch.nn.functional.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)


@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_conv2d_gradcheck(cfg):
    assert gradcheck(_ours(cfg), _inputs(cfg))


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("cfg", CONFIGS, ids=_ids)
def test_conv2d_matches_torch_outputs_and_all_gradients(cfg):
    compare_with_torch(_ours(cfg), _theirs(cfg), _inputs(cfg))


@needs_torch
@pytest.mark.parametrize("budget", [1, 300, 4000])
@pytest.mark.parametrize("cfg", [CONFIGS[2], CONFIGS[4], CONFIGS[6], CONFIGS[14]], ids=_ids)
def test_conv2d_blocks_and_row_bands_match_torch(cfg, budget, monkeypatch):
    # tiny budgets split the batch into many blocks and each sample into bands of output rows,
    # whose dX contributions overlap; they run on the worker threads
    monkeypatch.setattr(conv_mod, "BLOCK_BYTES", budget)
    x_shape, w_shape, *rest = cfg
    cfg = ((5, *x_shape[1:]), w_shape, *rest)
    compare_with_torch(_ours(cfg), _theirs(cfg), _inputs(cfg, seed=1))


@needs_torch
def test_conv2d_float32_matches_torch_on_a_cnn_shape():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8, 12, 12)).astype(np.float32)
    w = (rng.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    y = conv2d(gc.tensor(x), gc.tensor(w), gc.tensor(b), padding=1)
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), ref.numpy(), atol=1e-4, rtol=1e-4)


def test_conv2d_output_is_channels_last_in_memory():
    y = conv2d(gc.randn(2, 3, 6, 6), gc.randn(5, 3, 3, 3), padding=1)
    assert y.shape == (2, 5, 6, 6)
    assert y.data.transpose(0, 2, 3, 1).flags.c_contiguous


def test_conv2d_accepts_any_input_and_gradient_memory_order():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 5))
    w = rng.standard_normal((4, 3, 3, 3))
    g = rng.standard_normal((2, 4, 5, 5))
    results = []
    for layout in ("C", "channels_last", "strided"):
        if layout == "C":
            xa, ga = x, g
        elif layout == "channels_last":
            xa = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
            ga = np.ascontiguousarray(g.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        else:
            xa = np.repeat(x, 2, axis=3)[..., ::2]
            ga = np.repeat(g, 2, axis=2)[:, :, ::2]
        xt, wt = gc.tensor(xa, requires_grad=True), gc.tensor(w, requires_grad=True)
        conv2d(xt, wt, padding=1).backward(ga)
        results.append((conv2d(gc.tensor(xa), gc.tensor(w), padding=1).numpy(), xt.grad, wt.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a, b, atol=1e-12)


def test_conv2d_first_layer_computes_no_input_gradient():
    x = gc.randn(2, 1, 6, 6)  # data: requires_grad=False
    w = gc.randn(3, 1, 3, 3, requires_grad=True)
    b = gc.randn(3, requires_grad=True)
    y = conv2d(x, w, b, padding=1)
    fn = y.grad_fn
    assert fn.needs_input_grad == (False, True, True)
    y.sum().backward()
    assert x.grad is None and w.grad is not None and b.grad is not None
    assert w.grad.flags.c_contiguous


def test_conv2d_frozen_weight_still_gives_input_gradient_without_weight_gradient():
    x = gc.randn(2, 2, 5, 5, requires_grad=True)
    w = gc.randn(3, 2, 3, 3)
    conv2d(x, w, stride=2).sum().backward()
    assert x.grad.shape == (2, 2, 5, 5) and w.grad is None


def test_conv2d_bias_gradient_sums_over_batch_and_positions():
    x = gc.randn(3, 2, 4, 4)
    w = gc.randn(5, 2, 3, 3, requires_grad=True)
    b = gc.zeros(5, requires_grad=True)
    conv2d(x, w, b).sum().backward()
    np.testing.assert_allclose(b.grad, np.full(5, 3 * 2 * 2))


def test_conv2d_same_result_with_one_and_two_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="thread control needs threadpoolctl")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    results = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            xt, wt = gc.tensor(x, requires_grad=True), gc.tensor(w, requires_grad=True)
            y = conv2d(xt, wt, padding=1)
            y.sum().backward()
            results.append((y.numpy().copy(), xt.grad, wt.grad))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_parallel_for_gives_each_worker_its_own_scratch_and_runs_every_task():
    seen = []

    def body(i, scratch):
        scratch["count"] = scratch.get("count", 0) + 1
        seen.append(i)

    partials = conv_mod.parallel_for(np, 37, body)
    assert sorted(seen) == list(range(37))
    assert sum(p.get("count", 0) for p in partials) == 37


def test_sample_chunks_keep_small_batches_on_one_thread_and_split_large_ones():
    kib = 1024
    small = conv_mod.PARALLEL_MIN_BYTES // (64 * kib) - 1  # samples of 64 KiB, just under the limit
    assert conv_mod.sample_chunks(np, small, 64 * kib) == [(0, small)]
    large = conv_mod.sample_chunks(np, 4 * small, 64 * kib)
    assert len(large) > 1
    assert large[0][0] == 0 and large[-1][1] == 4 * small
    assert all(a[1] == b[0] for a, b in itertools.pairwise(large))  # contiguous, no gaps or overlaps
    assert all(hi - lo == conv_mod.CHUNK_BYTES // (64 * kib) for lo, hi in large[:-1])


def test_block_budget_gives_every_worker_several_blocks_of_a_small_batch(monkeypatch):
    monkeypatch.setattr(conv_mod, "num_threads", lambda xp: 2)
    mib = 1024 * 1024
    per_block = conv_mod.block_budget(np, 4 * mib, conv_mod.BLOCK_BYTES)
    assert per_block == 4 * mib // (2 * conv_mod.BLOCKS_PER_WORKER)
    assert conv_mod.block_budget(np, 400 * mib, conv_mod.BLOCK_BYTES) == conv_mod.BLOCK_BYTES
    assert conv_mod.block_budget(np, 64 * 1024, conv_mod.BLOCK_BYTES) == conv_mod.MIN_BLOCK_BYTES
    assert conv_mod.block_budget(np, 4 * mib, 300) == 300  # an explicit small budget still wins
    monkeypatch.setattr(conv_mod, "num_threads", lambda xp: 1)
    assert conv_mod.block_budget(np, 4 * mib, conv_mod.BLOCK_BYTES) == conv_mod.BLOCK_BYTES


@pytest.mark.parametrize(
    ("x_shape", "w_shape"),
    [((16, 3, 16, 16), (16, 3, 3, 3)), ((4, 1, 28, 28), (16, 1, 5, 5)), ((8, 16, 14, 14), (16, 16, 3, 3))],
    ids=["im2col", "im2col-one-channel", "winograd"],
)
def test_conv2d_weight_gradient_is_the_same_on_every_run_with_two_threads(x_shape, w_shape):
    # the blocks' partial sums of dW and db are added in a fixed order, not in the order the
    # threads happen to finish (before, 5 to 24 different results came out of 40 runs)
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="worker threads need threadpoolctl")
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    results = set()
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        for _ in range(25):
            wt, bt = gc.tensor(w, requires_grad=True), gc.tensor(b, requires_grad=True)
            y = conv2d(gc.tensor(x), wt, bt, padding=1)
            y.backward(gc.tensor(np.full(y.shape, 0.37, np.float32)))
            results.add(wt.grad.tobytes() + bt.grad.tobytes())
    assert len(results) == 1


@pytest.mark.parametrize(
    ("c_in", "kernel", "padding"), [(8, 3, 1), (3, 3, 1), (4, 1, 0)], ids=["winograd", "im2col", "pointwise"]
)
def test_conv2d_of_an_empty_batch_gives_empty_output_and_zero_filter_gradients(c_in, kernel, padding):
    x = gc.tensor(np.zeros((0, c_in, 6, 6), np.float32), requires_grad=True)
    w = gc.tensor(np.ones((5, c_in, kernel, kernel), np.float32), requires_grad=True)
    b = gc.tensor(np.ones(5, np.float32), requires_grad=True)
    y = conv2d(x, w, b, padding=padding)
    assert y.shape == (0, 5, 6, 6)
    y.sum().backward()
    assert x.grad.shape == (0, c_in, 6, 6)
    np.testing.assert_array_equal(w.grad, np.zeros(w.shape))
    np.testing.assert_array_equal(b.grad, np.zeros(5))


@pytest.mark.parametrize("stall_first", [False, True])
def test_parallel_sum_is_ordered_and_bounded_however_the_threads_run(stall_first, monkeypatch):
    # 64 groups of one item each on 2 threads. Stalling item 0 lets the other thread finish
    # all 63 others first: a sum that waited for group 0 before adding anything would then
    # hold 63 partials of 1 MiB; along the tree it holds about one per level
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="worker threads need threadpoolctl")
    monkeypatch.setattr(conv_mod, "BLOCKS_PER_WORKER", 32)
    parts = np.random.default_rng(0).standard_normal((64, 5)).astype(np.float32)

    def body(i, _scratch):
        if i == 0 and stall_first:
            time.sleep(0.3)
        return parts[i].copy(), np.ones(2**18, np.float32), None

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        reference = conv_mod.parallel_sum(np, 64, lambda i, _s: (parts[i].copy(), None, None), 3)
        tracemalloc.start()
        try:
            total = conv_mod.parallel_sum(np, 64, body, 3)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert total[0].tobytes() == reference[0].tobytes()  # same tree, same rounding
    np.testing.assert_allclose(total[0], parts.astype(np.float64).sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(total[1], np.full(2**18, 64.0, np.float32))
    assert total[2] is None
    assert peak < 20 * 2**20


def test_conv_output_size_formula():
    assert conv_output_size(28, 3, 1, 2, 1) == 28
    assert conv_output_size(7, 3, 2, 2, 1) == 4
    assert conv_output_size(7, 3, 1, 0, 2) == 3


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kwargs", "pattern"),
    [
        ((2, 4, 5, 5), (3, 3, 3, 3), {}, r"Expected input with C_in = .*3 channels. Received: input.shape=\(2, 4, 5, 5\)"),
        ((2, 4, 5), (3, 4, 3, 3), {}, r"Expected input of shape \(N, C_in, H, W\). Received: input.shape=\(2, 4, 5\)"),
        ((2, 4, 2, 2), (3, 4, 3, 3), {}, r"Expected the dilated kernel to fit"),
        ((2, 4, 5, 5), (3, 2, 3, 3), {"groups": 2}, r"Expected out_channels divisible by groups"),
        ((2, 4, 5, 5), (3, 4, 3, 3), {"stride": 0}, r"Expected stride ≥ 1. Received: stride=0"),
        ((2, 4, 5, 5), (3, 4, 3, 3), {"padding": -1}, r"Expected padding ≥ 0"),
        ((2, 4, 5, 5), (3, 4, 3, 3), {"padding": "full"}, r"Received: padding='full'"),
        ((2, 4, 5, 5), (3, 4, 3, 3), {"padding": "same", "stride": 2}, r"Expected stride=1 with padding='same'"),
    ],
)
def test_conv2d_shape_errors_say_what_was_expected_and_received(x_shape, w_shape, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        conv2d(gc.zeros(*x_shape), gc.zeros(*w_shape), **kwargs)


def test_conv2d_bias_shape_error():
    with pytest.raises(ValueError, match=r"Expected bias of shape \(3,\). Received: bias.shape=\(4,\)"):
        conv2d(gc.zeros(1, 2, 4, 4), gc.zeros(3, 2, 3, 3), gc.zeros(4))


# Winograd F(2×2, 3×3): 3×3 stride-1 convolutions with ≥ WINOGRAD_MIN_CHANNELS input channels
WINOGRAD_CONFIGS = [
    ((2, 8, 6, 6), (5, 8, 3, 3), 1, 1, 1, 1, True),
    ((1, 9, 7, 5), (4, 9, 3, 3), 1, 0, 1, 1, True),  # odd output sizes
    ((1, 8, 5, 6), (3, 8, 3, 3), 1, 2, 1, 1, False),
    ((2, 8, 5, 7), (4, 8, 3, 3), 1, (0, 2), 1, 1, True),
    ((1, 8, 4, 9), (6, 8, 3, 3), 1, "same", 1, 1, True),
]


@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS, ids=_ids)
def test_conv2d_winograd_path_is_chosen_and_gradchecks(cfg):
    x, w, *_ = _inputs(cfg)
    assert _ours(cfg)(gc.tensor(x), gc.tensor(w)).grad_fn is None
    y = _ours(cfg)(gc.tensor(x), gc.tensor(w, requires_grad=True))
    assert y.grad_fn.mode == "winograd"
    assert gradcheck(_ours(cfg), _inputs(cfg))


@needs_torch
@pytest.mark.parametrize("budget", [1, 5000, None])
@pytest.mark.parametrize("cfg", WINOGRAD_CONFIGS, ids=_ids)
def test_conv2d_winograd_matches_torch_in_blocks_and_bands(cfg, budget, monkeypatch):
    if budget is not None:  # one tile row per block, and a few per block
        monkeypatch.setattr(conv_mod, "WINOGRAD_BLOCK_BYTES", budget)
    compare_with_torch(_ours(cfg), _theirs(cfg), _inputs(cfg, seed=2), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("numba", [False, True])
def test_conv2d_winograd_output_and_input_gradient_of_odd_size_are_channels_last_contiguous(numba):
    # a padded view would send batch norm and ReLU after it down their slower strided paths
    rng = np.random.default_rng(6)
    x = np.ascontiguousarray(rng.standard_normal((2, 7, 5, 8)).astype(np.float32)).transpose(0, 3, 1, 2)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    with accel.use_numba(numba and accel.numba_available()):
        xt = gc.tensor(x, requires_grad=True)
        y = conv2d(xt, gc.tensor(w), padding=1)
        assert y.grad_fn.mode == "winograd"
        assert y.shape == (2, 4, 7, 5)
        assert y.numpy().transpose(0, 2, 3, 1).flags.c_contiguous
        dx, _, _ = y.grad_fn.backward(np.ones(y.shape, np.float32))
        assert dx.shape == x.shape
        assert dx.transpose(0, 2, 3, 1).flags.c_contiguous


@needs_torch
@pytest.mark.parametrize("needs", [(True, False, False), (False, True, False), (False, False, True)])
def test_conv2d_winograd_computes_only_the_gradients_asked_for(needs):
    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal((2, 8, 6, 6)), rng.standard_normal((4, 8, 3, 3)), rng.standard_normal(4)]
    ours = [gc.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    theirs = [torch.tensor(a, requires_grad=r) for a, r in zip(arrays, needs)]
    conv2d(*ours, padding=1).sum().backward()
    torch.nn.functional.conv2d(*theirs, padding=1).sum().backward()
    for a, b in zip(ours, theirs):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            np.testing.assert_allclose(a.grad, b.grad.numpy(), atol=1e-10)


@needs_torch
def test_conv2d_winograd_float32_error_is_that_of_direct_convolution():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 32, 14, 14)).astype(np.float32)
    w = (rng.standard_normal((16, 32, 3, 3)) / 17).astype(np.float32)
    g = rng.standard_normal((4, 16, 14, 14)).astype(np.float32)
    xt, wt = gc.tensor(x, requires_grad=True), gc.tensor(w, requires_grad=True)
    y = conv2d(xt, wt, padding=1)
    assert y.grad_fn.mode == "winograd"
    y.backward(g)
    exact_x, exact_w = torch.tensor(x, dtype=torch.float64, requires_grad=True), torch.tensor(w, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv2d(exact_x, exact_w, padding=1)
    ref.backward(torch.tensor(g, dtype=torch.float64))
    for got, exact in [(y.numpy(), ref), (xt.grad, exact_x.grad), (wt.grad, exact_w.grad)]:
        want = exact.detach().numpy()
        assert got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_conv2d_small_channel_counts_and_strides_use_im2col():
    w3 = gc.randn(4, 3, 3, 3, requires_grad=True)
    assert conv2d(gc.randn(1, 3, 6, 6), w3, padding=1).grad_fn.mode == "im2col"
    w8 = gc.randn(4, 8, 3, 3, requires_grad=True)
    assert conv2d(gc.randn(1, 8, 6, 6), w8, stride=2).grad_fn.mode == "im2col"
    w1 = gc.randn(4, 8, 1, 1, requires_grad=True)
    assert conv2d(gc.randn(1, 8, 6, 6), w1).grad_fn.mode == "pointwise"


@pytest.mark.parametrize("numba", [True, False])
def test_conv2d_reads_an_nchw_data_batch_in_place_with_the_same_bits(numba):
    """The compiled im2col reads an NCHW input through a strided view instead of a channels-last
    copy: the columns, hence output and filter gradient, are bit-identical to a channels-last input."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 11, 11)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    g = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    results = []
    with accel.use_numba(numba and accel.numba_available()):
        for xa in (x, np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)):
            wt, bt = gc.tensor(w, requires_grad=True), gc.tensor(np.ones(8, np.float32), requires_grad=True)
            y = conv2d(gc.tensor(xa), wt, bt, stride=2, padding=1)
            y.backward(g)
            results.append((y.numpy(), wt.grad, bt.grad))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
