"""Flax's seq2seq example, ported to jaxrnn: an LSTM encoder-decoder learns to add.

    python examples/flax_seq2seq_addition.py              # a short run: accuracy rises
    python examples/flax_seq2seq_addition.py --hidden-size 512 --num-train-steps 10000
                                                          # the original's settings

The original is ``examples/seq2seq`` in google/flax (``train.py``, ``models.py``,
``input_pipeline.py``). What it computes, and what computes it here:

- **Data**, generated on the fly: a query ``"a+b"`` (``a`` in 0..99, ``b`` in 0..999,
  sorted so that ``a <= b``) and its answer ``"=c"``, each followed by an end token (EOS),
  padded, one character per token (pad 0, EOS 1, then ``" +0123456789="``).
- **Model**: one-hot characters into an LSTM encoder, which reads the query up to its EOS
  (Flax passes ``seq_lengths`` = the position of EOS, so the encoder never reads the EOS
  itself); its final ``(h, c)`` starts an LSTM decoder whose outputs a dense layer turns
  into logits. ``jaxrnn.seq2seq.init_seq2seq(..., embed_size=None)`` is this model.
- **Training is free-running** (``teacher_force=False``, which ``train.py`` uses for
  training too): the decoder's first input is ``"="`` and every later input is the
  one-hot of a token *sampled* from its previous logits, with a key folded with the step
  number. ``jaxrnn.decoding.rollout`` with ``choose="sample"`` is that loop; gradients
  flow through the logits and the carries, not through the samples.
- **Loss**: cross-entropy against the answer after ``"="``, zero beyond each answer's EOS,
  averaged over every (batch, time) position, padding included (Flax's ``mask_sequences``
  then ``jnp.mean``). **Accuracy**: the fraction of answers whose every token up to EOS is
  the argmax of the training logits. Adam, learning rate 0.003, batch 128.

Differences: arrays are time-major ``(time, batch)`` integer tokens (jaxrnn's convention;
one-hot vectors exist only inside the model), batches come from a seeded NumPy generator
instead of Python's ``random``, and the decoded examples are greedy
(``jaxrnn.seq2seq.greedy_decode``) where Flax samples. The defaults are smaller (hidden
size 128, 2,000 steps: about 40 s on a 2-core CPU, accuracy near 1) than the original's
(512, 10,000). ``tests/test_ported_examples.py`` checks that Flax's model, loaded into
jaxrnn, gives the same loss and gradients.
"""

from __future__ import annotations

import argparse
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn

PAD, EOS = 0, 1
CHARS = sorted("0123456789+= ")  # token i + 2, as in Flax's CharacterTable
VOCAB_SIZE = len(CHARS) + 2
TOKEN = {char: i + 2 for i, char in enumerate(CHARS)}
EQUALS = TOKEN["="]  # the decoder's first input


class Batch(NamedTuple):
    queries: np.ndarray  # shape=(2 * max_digits + 2, batch), int: "a+b", EOS, padding
    query_lengths: np.ndarray  # shape=(batch,), int: characters before EOS
    answers: np.ndarray  # shape=(max_digits + 3, batch), int: "=c", EOS, padding
    answer_lengths: np.ndarray  # shape=(batch,), int: characters after "=", EOS included


def encode(texts: list[str], length: int) -> np.ndarray:
    """Tokens of each text followed by EOS and padding, time-major: ``(length, batch)``."""
    tokens = np.full((length, len(texts)), PAD)
    for b, text in enumerate(texts):
        tokens[: len(text) + 1, b] = [TOKEN[char] for char in text] + [EOS]
    return tokens


def decode(tokens: np.ndarray) -> str:
    """The characters of one sequence of tokens, up to its first EOS."""
    chars = []
    for token in tokens.tolist():
        if token == EOS:
            break
        chars.append("_" if token == PAD else CHARS[token - 2])
    return "".join(chars)


def make_batch(rng: np.random.Generator, batch_size: int, max_digits: int = 3) -> Batch:
    """``batch_size`` additions of a number below 100 and one of up to ``max_digits`` digits."""
    if max_digits < 2:  # the numbers are sorted, so the larger may have two digits
        raise ValueError(f"make_batch: max_digits must be >= 2; got {max_digits}")
    pairs = np.sort(
        np.stack([rng.integers(0, 100, batch_size), rng.integers(0, 10**max_digits, batch_size)]),
        axis=0,
    )
    queries = [f"{a}+{b}" for a, b in pairs.T]
    answers = [f"={a + b}" for a, b in pairs.T]
    return Batch(
        queries=encode(queries, 2 * max_digits + 2),
        query_lengths=np.array([len(q) for q in queries]),
        answers=encode(answers, max_digits + 3),
        answer_lengths=np.array([len(a) for a in answers]),
    )


# jit makes init's many small operations one program (sizes are static: they fix shapes).
@functools.partial(jax.jit, static_argnames="hidden_size")
def init_model(key: jax.Array, hidden_size: int) -> jaxrnn.seq2seq.Seq2SeqParams:
    """Flax's ``Seq2seq``: one-hot characters, LSTM encoder and decoder, dense readout,
    initialized as Flax initializes them (Flax's ``LSTMCell`` adds no forget-gate bias)."""
    return jaxrnn.seq2seq.init_seq2seq(
        key, VOCAB_SIZE, VOCAB_SIZE, embed_size=None, hidden_size=hidden_size, forget_bias=0.0
    )


def free_running_logits(
    params: jaxrnn.seq2seq.Seq2SeqParams,
    queries: jax.Array,
    query_lengths: jax.Array,
    num_steps: int,
    *,
    choose: str = "sample",
    key: jax.Array | None = None,
) -> jax.Array:
    """Logits ``(num_steps, batch, vocab)`` of the decoder fed its own tokens (Flax's
    ``teacher_force=False``): ``"sample"`` with a ``key`` as in training, or ``"argmax"``."""
    encoder_carry, _ = jaxrnn.seq2seq.encode(params, queries, query_lengths)
    first_input = jax.nn.one_hot(jnp.full(queries.shape[1:], EQUALS), VOCAB_SIZE)
    _, _, logits = jaxrnn.decoding.rollout(
        params.decoder,
        jaxrnn.seq2seq.bridge_carry(params, encoder_carry),
        first_input,
        num_steps,
        readout=lambda y: jaxrnn.heads.readout(params.readout, y),
        choose=choose,
        key=key,
        embed=lambda token: jax.nn.one_hot(token, VOCAB_SIZE),
    )
    return logits


def cross_entropy(logits: jax.Array, labels: jax.Array, lengths: jax.Array) -> jax.Array:
    """Cross-entropy, zero beyond ``lengths``, averaged over all (time, batch) positions."""
    per_step = jaxrnn.losses.sequence_softmax_cross_entropy(
        logits, labels, lengths=lengths, reduction="none"
    )
    return per_step.mean()


def sequence_accuracy(logits: jax.Array, labels: jax.Array, lengths: jax.Array) -> jax.Array:
    """Fraction of sequences whose argmax is right at every step before ``lengths``."""
    valid = jaxrnn.sequence_mask(lengths, labels.shape[0])
    right = (jnp.argmax(logits, -1) == labels) | ~valid
    return jnp.mean(jnp.all(right, axis=0))


def loss_fn(
    params: jaxrnn.seq2seq.Seq2SeqParams,
    queries: jax.Array,
    query_lengths: jax.Array,
    answers: jax.Array,
    answer_lengths: jax.Array,
    *,
    key: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """The free-running training loss, and the accuracy of its logits as ``aux``."""
    labels = answers[1:]  # what follows "="
    logits = free_running_logits(params, queries, query_lengths, labels.shape[0], key=key)
    loss = cross_entropy(logits, labels, answer_lengths)
    return loss, sequence_accuracy(logits, labels, answer_lengths)


def main(
    num_train_steps: int = 2000,
    hidden_size: int = 128,
    batch_size: int = 128,
    learning_rate: float = 0.003,
    decode_frequency: int = 250,
    max_digits: int = 3,
    seed: int = 0,
) -> list[float]:
    """Train, printing loss, accuracy and a few greedy decodings; return the accuracies."""
    params_key, sample_key = jax.random.split(jax.random.key(seed))
    params = init_model(params_key, hidden_size)
    train = jaxrnn.train.make_train_step(
        loss_fn, optax.adam(learning_rate), has_aux=True, key=sample_key
    )
    decode_greedily = jax.jit(
        functools.partial(
            jaxrnn.seq2seq.greedy_decode,
            max_length=max_digits + 2,
            start_token=EQUALS,
            end_token=EOS,
        )
    )
    rng = np.random.default_rng(seed)
    state, accuracies = train.init(params), []
    for step in range(1, num_train_steps + 1):
        batch = make_batch(rng, batch_size, max_digits)
        state, metrics = train.step(state, *batch)
        accuracies.append(float(metrics.aux))
        if step % decode_frequency == 0 or step == num_train_steps:
            print(f"[{step}] accuracy={metrics.aux:.3f}, loss={metrics.loss:.4f}")
            shown = make_batch(rng, 5, max_digits)
            tokens, _ = decode_greedily(state.params, shown.queries, shown.query_lengths)
            for query, inferred, golden in zip(
                shown.queries.T, np.asarray(tokens).T, shown.answers.T, strict=True
            ):
                inferred, golden = decode(inferred), decode(golden)[1:]  # golden: "=c"
                verdict = "(CORRECT)" if inferred == golden else f"(INCORRECT) correct={golden}"
                print(f"  DECODE: {decode(query)} = {inferred} {verdict}")
    return accuracies


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-train-steps", type=int, default=2000)
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=0.003)
    parser.add_argument("--decode-frequency", type=int, default=250)
    parser.add_argument("--max-digits", type=int, default=3, help="digits of the larger number")
    parser.add_argument("--seed", type=int, default=0)
    main(**vars(parser.parse_args()))
