"""jaxrnn: recurrent neural networks as pure JAX functions.

Cells (``"rnn"``, ``"lstm"``, ``"gru"``) are params pytrees; :func:`unroll` runs them over
time with ``lax.scan``; :func:`stack` and :func:`bidirectional` compose them; everything
works under ``jit``, ``vmap`` and ``grad`` and matches PyTorch numerically.
"""

from jaxrnn.cells import GRUParams, LSTMParams, LSTMState, RNNParams
from jaxrnn.composites import Bidirectional, BidirectionalState, Stack, bidirectional, stack
from jaxrnn.dropout import dropout
from jaxrnn.initialization import init_params
from jaxrnn.interop.torch import from_torch, to_torch
from jaxrnn.unrolling import cell_step, init_carry, unroll

__version__ = "0.1.0"

__all__ = [
    "Bidirectional",
    "BidirectionalState",
    "GRUParams",
    "LSTMParams",
    "LSTMState",
    "RNNParams",
    "Stack",
    "bidirectional",
    "cell_step",
    "dropout",
    "from_torch",
    "init_carry",
    "init_params",
    "stack",
    "to_torch",
    "unroll",
]
