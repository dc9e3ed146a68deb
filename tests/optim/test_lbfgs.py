"""LBFGS follows torch.optim.LBFGS (fixed step and strong-Wolfe line search) and resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradcraft.optim as optim
from tests.optim._problem import NAMES, gc_loss, gc_params, make_data, torch_loss, torch_params

torch = pytest.importorskip("torch", reason="parity tests need PyTorch 2.13")


@pytest.fixture(autouse=True)
def _torch_float64():
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)


def _closures(gp, tp, data, ours, theirs):
    def ours_closure():
        ours.zero_grad()
        loss = gc_loss(gp, data)
        loss.backward()
        return loss

    def theirs_closure():
        theirs.zero_grad()
        loss = torch_loss(torch, tp, data)
        loss.backward()
        return loss

    return ours_closure, theirs_closure


@pytest.mark.parametrize(
    "cfg",
    [
        {"lr": 0.5, "max_iter": 10, "history_size": 3},
        {"lr": 1.0, "max_iter": 10, "history_size": 5, "line_search_fn": "strong_wolfe"},
        {"lr": 1.0, "max_iter": 25, "max_eval": 30, "history_size": 100, "line_search_fn": "strong_wolfe"},
        {"lr": 0.1, "max_iter": 4, "tolerance_change": 1e-5},
    ],
    ids=["fixed-step", "strong-wolfe", "strong-wolfe-long", "tolerance"],
)
def test_lbfgs_trajectory_matches_torch(cfg):
    data = make_data(1)
    gp, tp = gc_params(data), torch_params(torch, data)
    ours, theirs = optim.LBFGS(gp, **cfg), torch.optim.LBFGS(tp, **cfg)
    ours_closure, theirs_closure = _closures(gp, tp, data, ours, theirs)
    for _ in range(6):
        a = float(ours.step(ours_closure))
        b = float(theirs.step(theirs_closure).detach())
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9)
        for name, p, q in zip(NAMES, gp, tp):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-6, atol=1e-6, err_msg=name)
    s, t = ours.state[gp[0]], theirs.state[tp[0]]
    assert s["func_evals"] == t["func_evals"] and s["n_iter"] == t["n_iter"]


def test_lbfgs_resumes_bit_for_bit_through_json_and_npz(tmp_path):
    data = make_data(2)
    cfg = {"lr": 1.0, "max_iter": 5, "history_size": 4, "line_search_fn": "strong_wolfe"}

    def closure_for(params, opt):
        def closure():
            opt.zero_grad()
            loss = gc_loss(params, data)
            loss.backward()
            return loss

        return closure

    gp = gc_params(data)
    opt = optim.LBFGS(gp, **cfg)
    for _ in range(3):
        opt.step(closure_for(gp, opt))
    weights = [p.data.copy() for p in gp]
    tree, arrays = optim.to_json_and_arrays(opt.state_dict())
    (tmp_path / "opt.json").write_text(json.dumps(tree))
    np.savez(tmp_path / "opt.npz", **arrays)
    for _ in range(3):
        opt.step(closure_for(gp, opt))

    gp2 = gc_params(data)
    for p, w in zip(gp2, weights):
        p.data[...] = w
    opt2 = optim.LBFGS(gp2, **cfg)
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as npz:
        loaded = optim.from_json_and_arrays(json.loads((tmp_path / "opt.json").read_text()), dict(npz))
    opt2.load_state_dict(loaded)
    for _ in range(3):
        opt2.step(closure_for(gp2, opt2))
    for p, q in zip(gp, gp2):
        assert np.array_equal(p.data, q.data)


def test_lbfgs_needs_a_closure_and_one_group():
    data = make_data(0)
    gp = gc_params(data)
    opt = optim.LBFGS(gp)
    with pytest.raises(ValueError, match="Expected a closure"):
        opt.step()
    with pytest.raises(ValueError, match="Expected one parameter group"):
        optim.LBFGS([{"params": gp[:2]}, {"params": gp[2:]}])
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS(gp, line_search_fn="armijo")
