"""The ported examples compute what their originals compute.

``examples/flax_seq2seq_addition.py`` against a Flax model built as Flax's seq2seq example
builds it (``nn.RNN`` of ``nn.LSTMCell`` encoder, a decoder cell of ``nn.LSTMCell`` and
``nn.Dense``): its weights loaded into jaxrnn give the same loss and gradients, teacher-forced
and free-running. ``examples/word_language_model.py`` against a PyTorch ``RNNModel`` as in
PyTorch's example: its ``state_dict`` loaded into jaxrnn gives the same loss and final state,
and jaxrnn's params loaded back into torch give the same loss again. Both examples' ``main``
also run end to end at tiny sizes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import pathlib
import sys
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn
from jaxrnn.interop.flax import from_flax
from jaxrnn.interop.torch import carry_from_torch, carry_to_torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def addition():
    return load_example("flax_seq2seq_addition")


@pytest.fixture(scope="module")
def word_lm():
    return load_example("word_language_model")


def max_abs_diff(a, b) -> float:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


# --- Flax's seq2seq example --------------------------------------------------------------


class FlaxDecoderCell(nn.RNNCellBase):
    """Flax's ``DecoderLSTMCell``, choosing the fed-back token by argmax (Flax samples it
    with ``jax.random.categorical``; argmax makes the free-running run deterministic)."""

    features: int
    teacher_force: bool
    vocab_size: int

    @nn.compact
    def __call__(self, carry, x):
        lstm_state, last_prediction = carry
        if not self.teacher_force:
            x = last_prediction
        lstm_state, y = nn.LSTMCell(self.features)(lstm_state, x)
        logits = nn.Dense(features=self.vocab_size)(y)
        prediction = jax.nn.one_hot(jnp.argmax(logits, -1), self.vocab_size)
        return (lstm_state, prediction), logits

    @property
    def num_feature_axes(self) -> int:
        return 1


class FlaxSeq2seq(nn.Module):
    """Flax's ``Seq2seq``: batch-major one-hot inputs, the encoder stops before EOS."""

    teacher_force: bool
    hidden_size: int
    vocab_size: int
    eos_id: int = 1

    @nn.compact
    def __call__(self, encoder_inputs, decoder_inputs):
        encoder = nn.RNN(nn.LSTMCell(self.hidden_size), return_carry=True, name="encoder")
        decoder = nn.RNN(
            FlaxDecoderCell(self.hidden_size, self.teacher_force, self.vocab_size),
            name="decoder",
        )
        seq_lengths = jnp.argmax(jnp.argmax(encoder_inputs, -1) == self.eos_id, axis=-1)
        encoder_state, _ = encoder(encoder_inputs, seq_lengths=seq_lengths)
        return decoder(decoder_inputs[:, :-1], initial_carry=(encoder_state, decoder_inputs[:, 0]))


#: Flax's ``teacher_force=True``, and ``False`` (the decoder fed its own argmax).
MODES = ("teacher-forced", "free-running")


def flax_loss(model, params, queries, answers, eos_id):
    """Flax's ``cross_entropy_loss`` on one-hot batch-major arrays."""
    logits = model.apply({"params": params}, queries, answers)
    labels = answers[:, 1:]
    eos = labels[:, :, eos_id]
    first = jnp.argmax(eos, -1)
    lengths = jnp.where(eos[jnp.arange(len(eos)), first], first + 1, labels.shape[1])
    xe = jnp.sum(nn.log_softmax(logits) * labels, axis=-1)
    mask = lengths[:, None] > jnp.arange(labels.shape[1])
    return -jnp.mean(xe * mask)


def to_jaxrnn(flax_params) -> jaxrnn.seq2seq.Seq2SeqParams:
    """The Flax model's params as jaxrnn's ``init_seq2seq(embed_size=None)`` model."""
    decoder = flax_params["FlaxDecoderCell_0"]
    dense = decoder["Dense_0"]
    return jaxrnn.seq2seq.Seq2SeqParams(
        source_embedding=None,
        target_embedding=None,
        encoder=from_flax(flax_params["LSTMCell_0"]),
        decoder=from_flax(decoder["LSTMCell_0"]),
        bridge_params=None,
        readout=jaxrnn.heads.ReadoutParams(w_y=dense["kernel"], b_y=dense["bias"]),
    )


def grads_to_jaxrnn(flax_grads) -> jaxrnn.seq2seq.Seq2SeqParams:
    """Flax's gradients in jaxrnn's layout. Flax's LSTM has one bias where jaxrnn has two
    that are added, so the gradient of each of jaxrnn's is that of Flax's."""
    grads = to_jaxrnn(flax_grads)
    encoder, decoder = (dataclasses.replace(c, b_x=c.b_h) for c in (grads.encoder, grads.decoder))
    return dataclasses.replace(grads, encoder=encoder, decoder=decoder)


@pytest.fixture(scope="module")
def losses_and_grads(addition):
    """``{mode: ((Flax's loss, its grads), (jaxrnn's loss, its grads))}`` for both modes.

    Flax's model is initialized by Flax (plus noise, so that zero biases are tested too)
    on a batch made by the example; jaxrnn runs the same weights (``to_jaxrnn``) on the
    same batch as integer tokens. One compiled program: compiling is most of the time.
    """
    batch = addition.make_batch(np.random.default_rng(0), batch_size=6)
    labels = batch.answers[1:]
    # Flax's example holds batch-major one-hot vectors
    queries, answers = (
        jax.nn.one_hot(tokens.T, addition.VOCAB_SIZE) for tokens in (batch.queries, batch.answers)
    )
    models = {
        mode: FlaxSeq2seq(mode == "teacher-forced", hidden_size=8, vocab_size=addition.VOCAB_SIZE)
        for mode in MODES
    }

    def jaxrnn_loss(params, mode):
        if mode == "teacher-forced":
            logits = jaxrnn.seq2seq.seq2seq_logits(
                params, batch.queries, batch.query_lengths, labels, start_token=addition.EQUALS
            )
        else:
            logits = addition.free_running_logits(
                params, batch.queries, batch.query_lengths, labels.shape[0], choose="argmax"
            )
        return addition.cross_entropy(logits, labels, batch.answer_lengths)

    @jax.jit
    def run(key):
        init_key, noise_key = jax.random.split(key)
        flax_params = models["teacher-forced"].init(init_key, queries, answers)["params"]
        leaves, treedef = jax.tree.flatten(flax_params)
        keys = jax.random.split(noise_key, len(leaves))
        noisy = [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)]
        flax_params = jax.tree.unflatten(treedef, noisy)
        return {
            mode: (
                jax.value_and_grad(flax_loss, argnums=1)(
                    model, flax_params, queries, answers, addition.EOS
                ),
                jax.value_and_grad(jaxrnn_loss)(to_jaxrnn(flax_params), mode),
            )
            for mode, model in models.items()
        }

    return run(jax.random.key(0))


@pytest.mark.parametrize("mode", MODES)
def test_flax_seq2seq_loads_into_jaxrnn_with_the_same_loss_and_grads(losses_and_grads, mode):
    (flax_value, flax_grads), (value, grads) = losses_and_grads[mode]
    assert abs(float(value) - float(flax_value)) < 1e-6
    assert max_abs_diff(grads, grads_to_jaxrnn(flax_grads)) < 1e-6


def test_flax_seq2seq_example_runs(addition, capsys):
    accuracies = addition.main(
        num_train_steps=2, hidden_size=8, batch_size=4, decode_frequency=2, max_digits=2
    )
    assert len(accuracies) == 2
    out = capsys.readouterr().out
    assert "[2] accuracy=" in out and out.count("DECODE:") == 5


# --- PyTorch's word_language_model example ------------------------------------------------

NTOKEN, EMSIZE, NHID, TIME, BATCH = 11, 6, 5, 7, 3


@pytest.fixture(scope="module")
def torch_model():
    """PyTorch's ``RNNModel`` (LSTM, 2 layers), built as its ``model.py`` builds it."""
    torch = pytest.importorskip("torch")

    class RNNModel(torch.nn.Module):
        def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5, tie_weights=False):
            super().__init__()
            self.drop = torch.nn.Dropout(dropout)
            self.encoder = torch.nn.Embedding(ntoken, ninp)
            self.rnn = torch.nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
            self.decoder = torch.nn.Linear(nhid, ntoken)
            if tie_weights:
                self.decoder.weight = self.encoder.weight

        def forward(self, inputs, hidden):
            emb = self.drop(self.encoder(inputs))
            output, hidden = self.rnn(emb, hidden)
            decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
            return torch.nn.functional.log_softmax(decoded, dim=1), hidden

    def loss(model, inputs, targets, hidden):
        with torch.no_grad():
            log_probs, (h_n, c_n) = model(torch.from_numpy(inputs), hidden)
            value = torch.nn.functional.nll_loss(log_probs, torch.from_numpy(targets).view(-1))
        return value.item(), h_n.numpy(), c_n.numpy()

    def make(seed, tied=False):
        torch.manual_seed(seed)
        ninp = NHID if tied else EMSIZE
        return RNNModel(NTOKEN, ninp, NHID, nlayers=2, dropout=0.3, tie_weights=tied).eval()

    return torch, make, loss


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_torch_word_lm_loads_into_jaxrnn_and_back(word_lm, torch_model, tied):
    torch, make, torch_loss = torch_model
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, NTOKEN, (TIME + 1, BATCH))
    inputs, targets = tokens[:-1], tokens[1:]
    h0, c0 = (rng.normal(size=(2, BATCH, NHID)).astype(np.float32) for _ in range(2))
    hidden = (torch.from_numpy(h0), torch.from_numpy(c0))  # a carry from an earlier chunk
    model = make(seed=0, tied=tied)
    expected, h_n, c_n = torch_loss(model, inputs, targets, hidden)

    params = word_lm.params_from_torch(model.state_dict(), dropout=0.3, tied=tied)
    carry = carry_from_torch(params.rnn, h0, c0)
    value, carry = word_lm.loss_fn(params, carry, inputs, targets, TIME)
    assert abs(float(value) - expected) < 1e-6
    ours_h, ours_c = carry_to_torch(params.rnn, carry)
    assert max_abs_diff((ours_h, ours_c), (h_n, c_n)) < 1e-6

    arrays = word_lm.params_to_torch(params)
    assert all(a.flags.writeable for a in arrays.values())
    other = make(seed=1, tied=tied)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.from_numpy warns on read-only arrays
        other.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=True)
    assert torch_loss(other, inputs, targets, hidden)[0] == pytest.approx(expected, abs=1e-6)


def test_word_lm_example_runs(word_lm, capsys):
    val_losses = word_lm.main(emsize=4, nhid=4, epochs=2, batch_size=8, dry_run=True, tied=True)
    assert len(val_losses) == 2 and all(np.isfinite(val_losses))
    out = capsys.readouterr().out
    assert "| End of training | test loss" in out


def test_word_lm_anneals_the_learning_rate(word_lm):
    sgd = optax.inject_hyperparams(optax.sgd)(learning_rate=20.0)
    train = jaxrnn.train.make_train_step(lambda p: p.sum(), sgd, max_grad_norm=0.25, jit=False)
    state = word_lm.anneal(train.init(jnp.zeros(3)))
    assert float(word_lm.learning_rate(state)) == 5.0
