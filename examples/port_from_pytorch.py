"""Port a trained PyTorch LSTM to jaxrnn through its saved state_dict file.

    python examples/port_from_pytorch.py

1. Train a small ``nn.LSTM`` + ``nn.Linear`` sequence classifier in PyTorch for a few steps.
2. ``torch.save(model.state_dict(), path)``, the usual way PyTorch weights are shipped.
3. Load the file with :func:`jaxrnn.interop.torch.load_torch_state_dict`, which needs no
   torch (it reads the zip archive and rebuilds tensors as NumPy arrays), and turn the
   LSTM's arrays into jaxrnn params with :func:`~jaxrnn.interop.torch.from_state_dict`.
4. Run the same inputs through both and check the logits match.

Steps 3 and 4 are what a JAX-only machine runs; torch is only needed to make the file.
"""

from __future__ import annotations

import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn.interop.torch import from_state_dict, load_torch_state_dict

INPUT_SIZE, HIDDEN_SIZE, NUM_CLASSES, TIME, BATCH = 3, 16, 2, 12, 32


def train_torch_model(steps: int = 20):
    """Train a two-layer LSTM to tell whether a sequence's first feature sums positive."""
    import torch

    torch.manual_seed(0)

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(INPUT_SIZE, HIDDEN_SIZE, num_layers=2)
            self.head = torch.nn.Linear(HIDDEN_SIZE, NUM_CLASSES)

        def forward(self, xs):  # xs: (time, batch, input_size), PyTorch's default layout
            ys, _ = self.lstm(xs)
            return self.head(ys[-1])

    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(steps):
        xs = torch.randn(TIME, BATCH, INPUT_SIZE)
        labels = (xs[:, :, 0].sum(0) > 0).long()
        loss = torch.nn.functional.cross_entropy(model(xs), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0:
            print(f"torch step {step:2d}  loss {loss.item():.3f}")
    return model


@jax.jit
def jax_logits(params: jaxrnn.Stack, head: dict[str, jax.Array], xs: jax.Array) -> jax.Array:
    """The classifier's forward pass in JAX: ``xs`` is ``(time, batch, input_size)``."""
    _, ys = jaxrnn.unroll(params, None, xs)
    return ys[-1] @ head["weight"].T + head["bias"]


def main(steps: int = 20) -> None:
    import torch

    model = train_torch_model(steps)
    path = os.path.join(tempfile.mkdtemp(), "classifier.pt")
    torch.save(model.state_dict(), path)

    state_dict = load_torch_state_dict(path)  # NumPy arrays; torch is not used here
    xs = np.random.default_rng(1).normal(size=(TIME, 4, INPUT_SIZE)).astype(np.float32)
    params = from_state_dict(state_dict, prefix="lstm.")  # a 2-layer jaxrnn.Stack
    head = {"weight": jnp.asarray(state_dict["head.weight"]), "bias": state_dict["head.bias"]}
    print("loaded", params)
    logits = jax_logits(params, head, jnp.asarray(xs))

    with torch.no_grad():
        expected = model(torch.from_numpy(xs))
    error = float(np.max(np.abs(np.asarray(logits) - expected.numpy())))
    print(f"max |jaxrnn - torch| over the logits: {error:.2e}")
    assert error < 1e-5, error


if __name__ == "__main__":
    main()
