"""Recurrent cells: one small module per cell, each a params type with its equations."""

from collections.abc import Callable
from typing import Any

from jaxrnn.cells import (
    conv1d,
    convlstm,
    gru,
    lru,
    lstm,
    lstm_ln,
    mgu,
    mingru,
    minlstm,
    mlstm,
    rglru,
    rnn,
    slstm,
)
from jaxrnn.cells.base import Cell
from jaxrnn.cells.conv1d import Conv1DParams
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
from jaxrnn.cells.rglru import RGLRUParams
from jaxrnn.cells.rnn import RNNParams
from jaxrnn.cells.slstm import SLSTMParams, SLSTMState

#: Cell name -> init function ``(key, input_size, hidden_size, **options) -> params``.
CELL_INITS: dict[str, Callable[..., Any]] = {"rnn": rnn.init, "lstm": lstm.init, "gru": gru.init}
# Linear in their state, so they also run with unroll(..., method="parallel").
CELL_INITS.update(mingru=mingru.init, minlstm=minlstm.init, lru=lru.init)
CELL_INITS.update({"lstm_ln": lstm_ln.init, "mgu": mgu.init, "convlstm": convlstm.init})
CELL_INITS.update(rglru=rglru.init, conv1d=conv1d.init)  # Griffin/Hawk; rglru is linear
CELL_INITS.update(slstm=slstm.init)  # xLSTM's sLSTM
CELL_INITS["mlstm"] = mlstm.init  # xLSTM's matrix memory; a ParallelFormCell ("parallel")

__all__ = [
    "CELL_INITS",
    "Cell",
    "Conv1DParams",
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
    "RGLRUParams",
    "RNNParams",
    "SLSTMParams",
    "SLSTMState",
]
