"""Recurrent cells: one small module per cell, each a params type with its equations."""

from collections.abc import Callable
from typing import Any

from jaxrnn.cells import convlstm, gru, lru, lstm, lstm_ln, mgu, mingru, minlstm, mlstm, rnn
from jaxrnn.cells.base import Cell
from jaxrnn.cells.convlstm import ConvLSTMParams
from jaxrnn.cells.gru import GRUParams
from jaxrnn.cells.linear import LinearCell, ParallelFormCell
from jaxrnn.cells.lru import LRUParams, LRUState
from jaxrnn.cells.lstm import LSTMParams, LSTMState
from jaxrnn.cells.lstm_ln import LayerNormLSTMParams
from jaxrnn.cells.mgu import MGUParams
from jaxrnn.cells.mingru import MinGRUParams
from jaxrnn.cells.minlstm import MinLSTMParams
from jaxrnn.cells.mlstm import MLSTMParams, MLSTMState
from jaxrnn.cells.rnn import RNNParams

#: Cell name -> init function ``(key, input_size, hidden_size, **options) -> params``.
CELL_INITS: dict[str, Callable[..., Any]] = {"rnn": rnn.init, "lstm": lstm.init, "gru": gru.init}
# Linear in their state, so they also run with unroll(..., method="parallel").
CELL_INITS.update(mingru=mingru.init, minlstm=minlstm.init, lru=lru.init)
CELL_INITS.update({"lstm_ln": lstm_ln.init, "mgu": mgu.init, "convlstm": convlstm.init})
CELL_INITS["mlstm"] = mlstm.init  # xLSTM's matrix memory; a ParallelFormCell ("parallel")

__all__ = [
    "CELL_INITS",
    "Cell",
    "ConvLSTMParams",
    "GRUParams",
    "LRUParams",
    "LRUState",
    "LSTMParams",
    "LSTMState",
    "LayerNormLSTMParams",
    "LinearCell",
    "MGUParams",
    "MLSTMParams",
    "MLSTMState",
    "MinGRUParams",
    "MinLSTMParams",
    "ParallelFormCell",
    "RNNParams",
]
