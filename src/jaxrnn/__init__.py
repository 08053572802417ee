"""jaxrnn: recurrent neural networks as pure JAX functions.

Cells (``"rnn"``, ``"lstm"``, ``"gru"``) are params pytrees; [`unroll`][jaxrnn.unroll] runs them
over time with ``lax.scan``; [`stack`][jaxrnn.stack] and [`bidirectional`][jaxrnn.bidirectional]
compose them; everything works under ``jit``, ``vmap`` and ``grad`` and matches PyTorch numerically.
"""

from jaxrnn.attention import (
    AttentionCell,
    AttentionParams,
    AttentionState,
    attend,
    init_attention,
    init_attention_cell,
    unroll_with_alignments,
    with_memory,
)
from jaxrnn.carries import CarryOutputs, LearnedInit, learned_init, with_carry_outputs
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
from jaxrnn.core.composites import Bidirectional, BidirectionalState, Stack, bidirectional, stack
from jaxrnn.core.dropout import dropout
from jaxrnn.core.initialization import init_params
from jaxrnn.core.unrolling import cell_step, init_carry, sequence_mask, unroll
from jaxrnn.cudnn import (  # also registers the unroll method "cudnn"
    CuDNNFallbackWarning,
    from_cudnn_weights,
    to_cudnn_weights,
)
from jaxrnn.decoding import decoded_lengths, generate
from jaxrnn.heads import ReadoutParams, init_readout, readout
from jaxrnn.interop.torch import from_torch, to_torch
from jaxrnn.long_sequences import (
    chunk_lengths,
    reset_carry,
    split_chunks,
    truncated_bptt,
    unroll_with_resets,
)
from jaxrnn.losses import (
    masked_reduce,
    sequence_binary_cross_entropy,
    sequence_mean_squared_error,
    sequence_softmax_cross_entropy,
)
from jaxrnn.parallel import (  # also registers unroll methods "parallel", "deer", "quasi_deer"
    DEERInfo,
    DEERNotConvergedError,
    deer_unroll,
    linear_scan,
)
from jaxrnn.pooling import final_hidden, pool_last, pool_max, pool_mean
from jaxrnn.precision import MixedPrecision, mixed_precision
from jaxrnn.regularization import Regularized, regularize
from jaxrnn.seq2seq import (
    Seq2SeqParams,
    beam_search,
    bridge_carry,
    encode,
    greedy_decode,
    init_seq2seq,
    sample_decode,
    seq2seq_alignments,
    seq2seq_logits,
    seq2seq_loss,
    shift_right,
)
from jaxrnn.train import (
    StepMetrics,
    TrainState,
    TrainStep,
    fit,
    make_train_step,
    restore_checkpoint,
    save_checkpoint,
)

__version__ = "0.1.0"

__all__ = [
    "AttentionCell",
    "AttentionParams",
    "AttentionState",
    "Bidirectional",
    "BidirectionalState",
    "CarryOutputs",
    "ConvLSTMParams",
    "CuDNNFallbackWarning",
    "DEERInfo",
    "DEERNotConvergedError",
    "GRUParams",
    "LRUParams",
    "LRUState",
    "LSTMParams",
    "LSTMState",
    "LayerNormLSTMParams",
    "LearnedInit",
    "MGUParams",
    "MinGRUParams",
    "MinLSTMParams",
    "MixedPrecision",
    "RNNParams",
    "ReadoutParams",
    "Regularized",
    "Seq2SeqParams",
    "Stack",
    "StepMetrics",
    "TrainState",
    "TrainStep",
    "attend",
    "beam_search",
    "bidirectional",
    "bridge_carry",
    "cell_step",
    "chunk_lengths",
    "decoded_lengths",
    "deer_unroll",
    "dropout",
    "encode",
    "final_hidden",
    "fit",
    "from_cudnn_weights",
    "from_torch",
    "generate",
    "greedy_decode",
    "init_attention",
    "init_attention_cell",
    "init_carry",
    "init_params",
    "init_readout",
    "init_seq2seq",
    "learned_init",
    "linear_scan",
    "make_train_step",
    "masked_reduce",
    "mixed_precision",
    "pool_last",
    "pool_max",
    "pool_mean",
    "readout",
    "regularize",
    "reset_carry",
    "restore_checkpoint",
    "sample_decode",
    "save_checkpoint",
    "seq2seq_alignments",
    "seq2seq_logits",
    "seq2seq_loss",
    "sequence_binary_cross_entropy",
    "sequence_mask",
    "sequence_mean_squared_error",
    "sequence_softmax_cross_entropy",
    "shift_right",
    "split_chunks",
    "stack",
    "to_cudnn_weights",
    "to_torch",
    "truncated_bptt",
    "unroll",
    "unroll_with_alignments",
    "unroll_with_resets",
    "with_carry_outputs",
    "with_memory",
]
