"""Recurrent cells: one small module per cell, each a params type with its equations."""

from collections.abc import Callable
from typing import Any

from jaxrnn.cells import gru, lstm, rnn
from jaxrnn.cells._base import Cell
from jaxrnn.cells.gru import GRUParams
from jaxrnn.cells.lstm import LSTMParams, LSTMState
from jaxrnn.cells.rnn import RNNParams

#: Cell name -> init function ``(key, input_size, hidden_size, **options) -> params``.
CELL_INITS: dict[str, Callable[..., Any]] = {"rnn": rnn.init, "lstm": lstm.init, "gru": gru.init}

__all__ = ["CELL_INITS", "Cell", "GRUParams", "LSTMParams", "LSTMState", "RNNParams"]
