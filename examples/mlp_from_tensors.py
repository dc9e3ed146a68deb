"""Train a 784-256-10 ReLU MLP on Fashion-MNIST with nothing but Tensors and plain SGD.

Everything a framework usually hides is spelled out: the weights are leaf tensors, the loss is
log-softmax + negative log-likelihood written with tensor ops, and the update is
``W -= lr * dW`` under ``no_grad``, with the learning rate halved after every epoch.

Run: ``python examples/mlp_from_tensors.py [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import gradcraft as gc
from gradcraft.data import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--decay", type=float, default=0.5, help="lr factor applied after each epoch")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = gc.manual_seed(args.seed)
    train, test = load("fashion-mnist", split="train"), load("fashion-mnist", split="test")
    x_train = train.x.reshape(len(train), -1).astype(np.float32) / 255.0
    x_test = test.x.reshape(len(test), -1).astype(np.float32) / 255.0
    mean, std = x_train.mean(), x_train.std()  # statistics of the training split only
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    # He initialization for ReLU layers: W ~ N(0, 2 / fan_in)
    w1 = gc.tensor(rng.standard_normal((784, 256)) * np.sqrt(2 / 784), dtype=np.float32, requires_grad=True)
    b1 = gc.zeros(256, requires_grad=True)
    w2 = gc.tensor(rng.standard_normal((256, 10)) * np.sqrt(2 / 256), dtype=np.float32, requires_grad=True)
    b2 = gc.zeros(10, requires_grad=True)
    params = [w1, b1, w2, b2]

    def forward(x: gc.Tensor) -> gc.Tensor:
        return (x @ w1 + b1).relu() @ w2 + b2

    lr = args.lr
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            logits = forward(gc.tensor(x_train[idx]))
            # cross-entropy = mean over the batch of -log softmax(logits)[label]
            loss = -logits.log_softmax(axis=1)[np.arange(len(idx)), train.y[idx]].mean()
            loss.backward()
            with gc.no_grad():
                for p in params:
                    p.data -= lr * p.grad
                    p.grad = None
            total += loss.item() * len(idx)
        lr *= args.decay  # step decay: anneal the learning rate once per epoch
        with gc.no_grad():
            accuracy = (forward(gc.tensor(x_test)).argmax(axis=1).numpy() == test.y).mean()
        print(
            f"epoch {epoch}: train loss {total / len(x_train):.4f}, "
            f"test accuracy {accuracy:.2%} ({time.perf_counter() - start:.1f} s)"
        )


if __name__ == "__main__":
    main()
