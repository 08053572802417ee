"""PyTorch's word_language_model example, ported to jaxrnn: a 2-layer LSTM language model.

    python examples/word_language_model.py                # a short run: perplexity falls
    python examples/word_language_model.py --emsize 650 --nhid 650 --dropout 0.5 --epochs 40

The original is ``word_language_model`` in pytorch/examples (``main.py``, ``model.py``,
``data.py``). What it computes, and what computes it here:

- **Corpus**: PyTorch reads WikiText-2 from disk. Nothing is downloaded here: the corpus is
  Python's own help text, ``pydoc_data.topics`` (it ships with CPython; about 77,000 words,
  8,800 distinct), its topics joined in sorted order and split by lines: the first 80% for
  training, the next 10% for validation, the last 10% for testing. Tokenized as ``data.py``
  does: each line's whitespace-separated words, then ``<eos>``; one dictionary for all three.
- **Batchify**: the token stream cut into ``batch_size`` columns, ``(steps, batch)``.
- **Model** (``RNNModel``): an embedding, dropout, a 2-layer LSTM with dropout between its
  layers (``init_params(..., num_layers=2, dropout=p)``), dropout, a linear decoder,
  optionally tied to the embedding (``--tied``: the decoder's weight *is* the embedding,
  ``logits = h E^T + b``). Initialized as PyTorch does: embedding and decoder uniform in
  ``[-0.1, 0.1]``, decoder bias zero, LSTM weights and biases uniform in
  ``[-1/sqrt(nhid), 1/sqrt(nhid)]`` (no forget-gate bias).
- **Truncated BPTT**: the columns are read in chunks of ``bptt`` steps; the LSTM's carry is
  passed from one chunk to the next but gradients stop at the chunk boundary (PyTorch's
  ``repackage_hidden``; here the carry is simply an input of the train step, not a
  parameter). Loss: mean cross-entropy of the next word. The last, shorter chunk is padded
  to ``bptt`` steps and masked with ``lengths=``, so the train step compiles once.
- **Optimizer**: plain SGD (learning rate 20) after clipping the gradient's global norm to
  0.25; after an epoch whose validation loss is not the best so far, the learning rate is
  divided by 4. The test loss is that of the params with the best validation loss.

Differences: the LSTM only (PyTorch's ``--model`` also offers GRU, RNN and a Transformer),
the best params are kept in memory instead of saved to ``model.pt``, and the defaults are
smaller (``emsize = nhid = 64``, 4 epochs) so that a CPU run takes about a minute.
``params_from_torch`` and ``params_to_torch`` convert weights to and from PyTorch's
``RNNModel``; ``tests/test_ported_examples.py`` checks that both give PyTorch's loss.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

EVAL_BATCH_SIZE = 10


class Corpus(NamedTuple):
    words: list[str]  # the dictionary: token id -> word
    train: np.ndarray  # shape=(num_tokens,), int32
    valid: np.ndarray  # shape=(num_tokens,), int32
    test: np.ndarray  # shape=(num_tokens,), int32


def load_corpus() -> Corpus:
    """Python's help topics, tokenized as ``data.py`` tokenizes WikiText-2."""
    from pydoc_data.topics import topics

    lines = "\n".join(topics[name] for name in sorted(topics)).splitlines()
    cut_valid, cut_test = int(0.8 * len(lines)), int(0.9 * len(lines))
    splits = lines[:cut_valid], lines[cut_valid:cut_test], lines[cut_test:]
    ids: dict[str, int] = {}
    tokenized = []
    for split in splits:
        words = [word for line in split for word in [*line.split(), "<eos>"]]
        tokenized.append(np.array([ids.setdefault(w, len(ids)) for w in words], np.int32))
    return Corpus(list(ids), *tokenized)


def batchify(tokens: np.ndarray, batch_size: int) -> np.ndarray:
    """The stream as ``batch_size`` columns ``(steps, batch)``, the remainder dropped."""
    steps = len(tokens) // batch_size
    return tokens[: steps * batch_size].reshape(batch_size, steps).T


def chunks(data: np.ndarray, bptt: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """``(inputs, targets, length)``: ``bptt`` steps each, the targets one word ahead. The
    last chunk has ``length < bptt`` valid steps and is padded to ``bptt``, so that every
    chunk has one shape and the train step compiles once (``lengths`` masks the padding)."""
    for i in range(0, len(data) - 1, bptt):
        length = min(bptt, len(data) - 1 - i)
        window = np.pad(data[i : i + length + 1], ((0, bptt - length), (0, 0)))
        yield window[:-1], window[1:], length


@jaxrnn.params_class
class RNNModel:
    """PyTorch's ``RNNModel`` as params: ``logits = dropout(LSTM(dropout(E[x]))) W + b``."""

    embedding: jax.Array  # shape=(ntoken, emsize): nn.Embedding's weight
    rnn: Any  # a jaxrnn.Stack of LSTMs: nn.LSTM(emsize, nhid, nlayers, dropout=...)
    decoder_weight: jax.Array | None  # shape=(nhid, ntoken): nn.Linear's weight.T; None: tied
    decoder_bias: jax.Array  # shape=(ntoken,)
    dropout: float = jaxrnn.static_field(0.2)  # on the embeddings and on the LSTM's outputs


def uniform(scale: float) -> Callable[..., jax.Array]:
    """PyTorch's ``nn.init.uniform_(w, -scale, scale)`` as a ``jax.nn.initializers`` function."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


# jit makes init's many small operations one program (sizes are static: they fix shapes).
@functools.partial(jax.jit, static_argnums=range(1, 7))
def init_model(
    key: jax.Array,
    ntoken: int,
    emsize: int,
    nhid: int,
    nlayers: int = 2,
    dropout: float = 0.2,
    tied: bool = False,
) -> RNNModel:
    """``RNNModel(...)`` with PyTorch's initialization (see the module docstring)."""
    if tied and nhid != emsize:
        raise ValueError(f"init_model: tied needs nhid == emsize; got {nhid} and {emsize}")
    k_embed, k_rnn, k_decoder = jax.random.split(key, 3)
    lstm_init = uniform(1 / math.sqrt(nhid))
    rnn = jaxrnn.init_params(
        k_rnn,
        "lstm",
        emsize,
        nhid,
        num_layers=nlayers,
        dropout=dropout if nlayers > 1 else 0.0,
        kernel_init=lstm_init,
        recurrent_init=lstm_init,
        bias_init=lstm_init,
        forget_bias=0.0,
    )
    return RNNModel(
        embedding=uniform(0.1)(k_embed, (ntoken, emsize)),
        # a Stack even of one layer, as nn.LSTM is layered (its names end in _l0)
        rnn=rnn if nlayers > 1 else jaxrnn.stack([rnn]),
        decoder_weight=None if tied else uniform(0.1)(k_decoder, (nhid, ntoken)),
        decoder_bias=jnp.zeros(ntoken),
        dropout=dropout,
    )


def forward(
    params: RNNModel,
    carry: Any,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    *,
    key: jax.Array | None = None,
) -> tuple[Any, jax.Array]:
    """``(carry, logits)`` for ``inputs`` of shape ``(time, batch)``, the carry taken after
    each column's ``lengths`` valid steps; dropout when ``key`` is given (training)."""
    xs = params.embedding[inputs]
    rnn_key = None
    if key is not None:
        embed_key, rnn_key, output_key = jax.random.split(key, 3)
        xs = jaxrnn.dropout(embed_key, xs, params.dropout)
    carry, ys = jaxrnn.unroll(params.rnn, carry, xs, lengths=lengths, key=rnn_key)
    if key is not None:
        ys = jaxrnn.dropout(output_key, ys, params.dropout)
    tied = params.decoder_weight is None
    w_y = params.embedding.T if tied else params.decoder_weight
    return carry, jaxrnn.heads.readout(jaxrnn.heads.ReadoutParams(w_y, params.decoder_bias), ys)


def loss_fn(
    params: RNNModel,
    carry: Any,
    inputs: jax.Array,
    targets: jax.Array,
    length: jax.Array | int,
    *,
    key: jax.Array | None = None,
) -> tuple[jax.Array, Any]:
    """Mean cross-entropy of the next word over the first ``length`` steps of a chunk
    (PyTorch's ``NLLLoss`` of ``log_softmax``), and the carry for the next chunk."""
    lengths = jnp.full(inputs.shape[1:], length)
    carry, logits = forward(params, carry, inputs, lengths, key=key)
    loss = jaxrnn.losses.sequence_softmax_cross_entropy(logits, targets, lengths=lengths)
    return loss, carry


eval_loss = jax.jit(loss_fn)  # no key: no dropout


def evaluate(params: RNNModel, data: np.ndarray, bptt: int) -> float:
    """Mean loss per word over batchified ``data``, without dropout."""
    carry, total = jaxrnn.init_carry(params.rnn, data.shape[1:]), 0.0
    for inputs, targets, length in chunks(data, bptt):
        loss, carry = eval_loss(params, carry, inputs, targets, length)
        total += length * float(loss)
    return total / (len(data) - 1)


def learning_rate(state: jaxrnn.train.TrainState) -> jax.Array:
    """SGD's learning rate: ``optax.inject_hyperparams`` keeps it in the optimizer state,
    which is ``(clipping's state, SGD's state)``."""
    return state.opt_state[1].hyperparams["learning_rate"]


def anneal(state: jaxrnn.train.TrainState, factor: float = 4.0) -> jaxrnn.train.TrainState:
    """The train state with SGD's learning rate divided by ``factor``."""
    clipping, sgd = state.opt_state
    hyperparams = {**sgd.hyperparams, "learning_rate": learning_rate(state) / factor}
    return state._replace(opt_state=(clipping, sgd._replace(hyperparams=hyperparams)))


def params_from_torch(
    state_dict: Mapping[str, Any], *, dropout: float = 0.2, tied: bool = False
) -> RNNModel:
    """Params from a PyTorch ``RNNModel``'s ``state_dict`` (tensors or NumPy arrays)."""
    return RNNModel(
        embedding=jnp.asarray(np.asarray(state_dict["encoder.weight"])),
        rnn=jaxrnn.interop.torch.from_state_dict(state_dict, prefix="rnn.", dropout=dropout),
        decoder_weight=None if tied else jnp.asarray(np.asarray(state_dict["decoder.weight"])).T,
        decoder_bias=jnp.asarray(np.asarray(state_dict["decoder.bias"])),
        dropout=dropout,
    )


def params_to_torch(params: RNNModel) -> dict[str, np.ndarray]:
    """A ``state_dict`` of NumPy arrays for PyTorch's ``RNNModel``; load it with
    ``model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})``."""
    embedding = np.array(params.embedding)
    tied = params.decoder_weight is None
    return {
        "encoder.weight": embedding,
        **{f"rnn.{name}": array for name, array in jaxrnn.to_torch(params.rnn).items()},
        "decoder.weight": embedding if tied else np.array(params.decoder_weight.T),
        "decoder.bias": np.array(params.decoder_bias),
    }


def main(
    emsize: int = 64,
    nhid: int = 64,
    nlayers: int = 2,
    lr: float = 20.0,
    clip: float = 0.25,
    epochs: int = 4,
    batch_size: int = 20,
    bptt: int = 35,
    dropout: float = 0.2,
    tied: bool = False,
    seed: int = 1111,
    log_interval: int = 100,
    dry_run: bool = False,
) -> list[float]:
    """Train, validating after every epoch; return the validation losses."""
    corpus = load_corpus()
    train_data = batchify(corpus.train, batch_size)
    valid_data = batchify(corpus.valid, EVAL_BATCH_SIZE)
    test_data = batchify(corpus.test, EVAL_BATCH_SIZE)
    print(f"{len(corpus.words)} words; {len(corpus.train)} tokens for training")

    init_key, dropout_key = jax.random.split(jax.random.key(seed))
    params = init_model(init_key, len(corpus.words), emsize, nhid, nlayers, dropout, tied)
    optimizer = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
    train = jaxrnn.train.make_train_step(
        loss_fn, optimizer, max_grad_norm=clip, has_aux=True, key=dropout_key
    )
    state, best_params, best_val_loss, val_losses = train.init(params), params, math.inf, []
    num_batches = len(train_data) // bptt
    for epoch in range(1, epochs + 1):
        epoch_start = start = time.time()
        carry, total_loss = jaxrnn.init_carry(params.rnn, (batch_size,)), 0.0
        for batch, (inputs, targets, length) in enumerate(chunks(train_data, bptt)):
            state, metrics = train.step(state, carry, inputs, targets, length)
            carry = metrics.aux
            total_loss += float(metrics.loss)
            if batch % log_interval == 0 and batch > 0:
                loss = total_loss / log_interval
                ms_per_batch = (time.time() - start) * 1000 / log_interval
                print(
                    f"| epoch {epoch:3d} | {batch:5d}/{num_batches:5d} batches "
                    f"| lr {float(learning_rate(state)):02.2f} | ms/batch {ms_per_batch:5.2f} "
                    f"| loss {loss:5.2f} | ppl {math.exp(loss):8.2f}"
                )
                total_loss, start = 0.0, time.time()
            if dry_run:
                break
        val_loss = evaluate(state.params, valid_data, bptt)
        val_losses.append(val_loss)
        print("-" * 89)
        print(
            f"| end of epoch {epoch:3d} | time: {time.time() - epoch_start:5.2f}s "
            f"| valid loss {val_loss:5.2f} | valid ppl {math.exp(val_loss):8.2f}"
        )
        print("-" * 89)
        if val_loss < best_val_loss:
            best_params, best_val_loss = state.params, val_loss
        else:  # no improvement on the validation set
            state = anneal(state)
    test_loss = evaluate(best_params, test_data, bptt)
    print("=" * 89)
    print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
    print("=" * 89)
    return val_losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emsize", type=int, default=64, help="size of word embeddings")
    parser.add_argument("--nhid", type=int, default=64, help="hidden units per layer")
    parser.add_argument("--nlayers", type=int, default=2, help="number of layers")
    parser.add_argument("--lr", type=float, default=20.0, help="initial learning rate")
    parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping")
    parser.add_argument("--epochs", type=int, default=4, help="upper epoch limit")
    parser.add_argument("--batch_size", type=int, default=20, help="batch size")
    parser.add_argument("--bptt", type=int, default=35, help="sequence length")
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout rate")
    parser.add_argument("--tied", action="store_true", help="tie embedding and decoder weights")
    parser.add_argument("--seed", type=int, default=1111, help="random seed")
    parser.add_argument("--log-interval", type=int, default=100, help="report interval")
    parser.add_argument("--dry-run", action="store_true", help="one batch per epoch")
    main(**vars(parser.parse_args()))
