"""jaxrnn: recurrent neural networks as pure JAX functions.

``import jaxrnn`` gives the core: the cells' params types, [`init_params`][jaxrnn.init_params],
[`init_carry`][jaxrnn.init_carry], [`cell_step`][jaxrnn.cell_step] (a ``lax.scan`` body),
[`unroll`][jaxrnn.unroll] (the ``lax.scan``), [`stack`][jaxrnn.stack] and
[`bidirectional`][jaxrnn.bidirectional], [`sequence_mask`][jaxrnn.sequence_mask],
[`dropout`][jaxrnn.dropout], PyTorch weights both ways, and what defining a cell takes
([`Cell`][jaxrnn.Cell], [`params_class`][jaxrnn.params_class]). Everything else is a
submodule, loaded when first used (``jaxrnn.losses`` imports optax, ``jaxrnn.train``
optax and tqdm, ``jaxrnn.interop.flax`` Flax; ``import jaxrnn`` imports none of them):

| submodule | what it holds |
|---|---|
| ``jaxrnn.methods`` | method objects for ``unroll(..., method=...)`` |
| ``jaxrnn.heads`` | readout layers on top of an RNN |
| ``jaxrnn.losses`` | sequence losses masked by lengths |
| ``jaxrnn.pooling`` | many-to-one: last, mean, max, final hidden state |
| ``jaxrnn.decoding`` | one-to-many generation |
| ``jaxrnn.seq2seq`` | encoder-decoders, teacher forcing, greedy/sampling/beam decoding |
| ``jaxrnn.attention`` | Bahdanau and Luong attention decoders |
| ``jaxrnn.regularization`` | variational dropout and zoneout |
| ``jaxrnn.carries`` | learned initial states, every step's carry as output |
| ``jaxrnn.long_sequences`` | truncated BPTT, resets |
| ``jaxrnn.train`` | optax training steps, a fit loop, checkpoints |
| ``jaxrnn.parallel`` | parallel-in-time methods: linear scans, DEER/ELK |
| ``jaxrnn.precision`` | mixed precision |
| ``jaxrnn.sharding`` | data and tensor parallelism |
| ``jaxrnn.cudnn`` | cuDNN's LSTM kernel |
| ``jaxrnn.interop.torch``, ``jaxrnn.interop.flax`` | weights and modules of PyTorch, Flax |
"""

import importlib
import warnings
from typing import Any

from jaxrnn.cells import (
    ConvLSTMParams,
    GRUParams,
    LayerNormLSTMParams,
    LRUParams,
    LRUState,
    LSTMParams,
    LSTMState,
    MGUParams,
    MinGRUParams,
    MinLSTMParams,
    RNNParams,
)
from jaxrnn.cells.base import Cell
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Stack, bidirectional, stack
from jaxrnn.core.dropout import dropout
from jaxrnn.core.initialization import init_params
from jaxrnn.core.params import params_class, static_field
from jaxrnn.core.unrolling import cell_step, init_carry, sequence_mask, unroll
from jaxrnn.interop.torch import from_torch, to_torch

__version__ = "0.2.0"

__all__ = [
    "Bidirectional",
    "BidirectionalState",
    "Cell",
    "ConvLSTMParams",
    "GRUParams",
    "LRUParams",
    "LRUState",
    "LSTMParams",
    "LSTMState",
    "LayerNormLSTMParams",
    "MGUParams",
    "MinGRUParams",
    "MinLSTMParams",
    "RNNParams",
    "Stack",
    "bidirectional",
    "cell_step",
    "dropout",
    "from_torch",
    "init_carry",
    "init_params",
    "params_class",
    "sequence_mask",
    "stack",
    "static_field",
    "to_torch",
    "unroll",
]

#: The toolkit: submodules loaded on first use (``jaxrnn.losses``, ...).
SUBMODULES = (
    "attention",
    "carries",
    "cells",
    "core",
    "cudnn",
    "decoding",
    "demo",
    "heads",
    "interop",
    "long_sequences",
    "losses",
    "methods",
    "parallel",
    "pooling",
    "precision",
    "regularization",
    "seq2seq",
    "sharding",
    "train",
)

#: Names that were top-level before 0.2.0 and their new homes (``jaxrnn.<module>.<name>``).
#: They still work from ``jaxrnn`` with a ``DeprecationWarning``, for one release.
MOVED = {
    **dict.fromkeys(
        (
            "AttentionCell",
            "AttentionParams",
            "AttentionState",
            "attend",
            "init_attention",
            "init_attention_cell",
            "unroll_with_alignments",
            "with_memory",
        ),
        "attention",
    ),
    **dict.fromkeys(
        ("CarryOutputs", "LearnedInit", "learned_init", "with_carry_outputs"), "carries"
    ),
    **dict.fromkeys(("CuDNNFallbackWarning", "from_cudnn_weights", "to_cudnn_weights"), "cudnn"),
    **dict.fromkeys(("decoded_lengths", "generate"), "decoding"),
    **dict.fromkeys(("ReadoutParams", "init_readout", "readout"), "heads"),
    **dict.fromkeys(
        ("chunk_lengths", "reset_carry", "split_chunks", "truncated_bptt", "unroll_with_resets"),
        "long_sequences",
    ),
    **dict.fromkeys(
        (
            "masked_reduce",
            "sequence_binary_cross_entropy",
            "sequence_mean_squared_error",
            "sequence_softmax_cross_entropy",
        ),
        "losses",
    ),
    **dict.fromkeys(
        ("DEERInfo", "DEERNotConvergedError", "deer_unroll", "linear_scan"), "parallel"
    ),
    **dict.fromkeys(("final_hidden", "pool_last", "pool_max", "pool_mean"), "pooling"),
    **dict.fromkeys(("MixedPrecision", "mixed_precision"), "precision"),
    **dict.fromkeys(("Regularized", "regularize"), "regularization"),
    **dict.fromkeys(
        (
            "Seq2SeqParams",
            "beam_search",
            "bridge_carry",
            "encode",
            "greedy_decode",
            "init_seq2seq",
            "sample_decode",
            "seq2seq_alignments",
            "seq2seq_logits",
            "seq2seq_loss",
            "shift_right",
        ),
        "seq2seq",
    ),
    **dict.fromkeys(
        (
            "StepMetrics",
            "TrainState",
            "TrainStep",
            "fit",
            "make_train_step",
            "restore_checkpoint",
            "save_checkpoint",
        ),
        "train",
    ),
}


def __getattr__(name: str) -> Any:
    """Submodules on first use; old top-level names with a ``DeprecationWarning``."""
    if name in SUBMODULES:
        return importlib.import_module(f"jaxrnn.{name}")
    if name in MOVED:
        home = f"jaxrnn.{MOVED[name]}"
        warnings.warn(
            f"jaxrnn.{name} moved to {home}.{name} in jaxrnn 0.2.0; the old name goes in 0.3.0",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, *SUBMODULES, "__version__"])
