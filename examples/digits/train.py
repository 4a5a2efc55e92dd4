"""Train the digits example (well under a minute on a laptop CPU) and save `digits.pt` next to this file.

    python examples/digits/train.py [--epochs 15] [--out examples/digits/digits.pt]

Loss: cross-entropy on the output spike counts over the 25 steps; surrogate-gradient BPTT through snnTorch.
The saved file is a plain state dict (weights only), loadable with torch.load(weights_only=True).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from snntorch import utils

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import STEPS, encode, load_digits_split, make_model


def spike_counts(model, spikes: torch.Tensor) -> torch.Tensor:
    utils.reset(model)
    return torch.stack([model(spikes[t]) for t in range(spikes.shape[0])]).sum(0)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        counts = spike_counts(model, torch.as_tensor(encode(x), dtype=torch.float32))
    return float((counts.argmax(1).numpy() == y).mean())


def train(epochs: int, seed: int = 0) -> tuple[torch.nn.Module, float, float]:
    torch.manual_seed(seed)
    x_train, x_test, y_train, y_test = load_digits_split()
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    spikes = torch.as_tensor(encode(x_train), dtype=torch.float32)
    labels = torch.as_tensor(y_train)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(labels))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(spike_counts(model, spikes[:, batch]) / STEPS * 5, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1:2d}: loss {loss.item():.3f}, test accuracy {accuracy(model, x_test, y_test):.3f}",
              flush=True)
    return model, accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "digits.pt")
    args = parser.parse_args()
    start = time.perf_counter()
    model, train_acc, test_acc = train(args.epochs)
    torch.save(model.state_dict(), args.out)
    print(f"trained in {time.perf_counter() - start:.1f} s: train accuracy {train_acc:.3f}, test accuracy "
          f"{test_acc:.3f}; saved {args.out}")


if __name__ == "__main__":
    main()
