"""Train a character-level LSTM on Python's own help text, then sample from it.

Run ``python -m jaxrnn.demo`` (``--help`` lists the options). The corpus is the help-topics
text that ships with every Python (``pydoc_data.topics``), so nothing is downloaded.

The model, written out with jaxrnn's core functions:

    xs = embedding[chars]                          # (time, batch, embed_size)
    _, hs = unroll(lstm, None, xs)                 # (time, batch, hidden_size)
    logits = hs @ w_out + b_out                    # (time, batch, vocab_size)
    loss = cross_entropy(logits[t], chars[t + 1])  # predict the next character

Training is ``jax.grad`` of that loss (backpropagation through time) and an optax update;
generation steps the LSTM one character at a time with [`cell_step`][jaxrnn.cell_step].
"""

from __future__ import annotations

import argparse
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from tqdm import tqdm

import jaxrnn

Params = dict[str, Any]
BITS_PER_NAT = 1 / math.log(2)  # a loss in nats (natural log) times this is in bits


class Result(NamedTuple):
    """What ``main`` returns: held-out losses (bits per character) and the sample."""

    initial_bits: float
    final_bits: float
    text: str


def load_corpus() -> str:
    """The standard library's help topics, joined in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


# Sizes are static (they fix array shapes); jit makes the many small init ops one program.
@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def init_model(
    key: jax.Array, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int
) -> Params:
    """Embedding -> LSTM -> linear readout, as one params dict (a pytree optax updates)."""
    k_embed, k_rnn, k_out = jax.random.split(key, 3)
    rnn = jaxrnn.init_params(k_rnn, "lstm", embed_size, hidden_size, num_layers=num_layers)
    return {
        "embedding": jax.random.normal(k_embed, (vocab_size, embed_size)),
        "rnn": rnn,
        "w_out": jax.nn.initializers.lecun_normal()(k_out, (rnn.output_size, vocab_size)),
        "b_out": jnp.zeros(vocab_size),
    }


def loss_fn(params: Params, tokens: jax.Array) -> jax.Array:
    """Mean next-character cross-entropy (nats) over ``tokens`` of shape (time + 1, batch)."""
    xs = params["embedding"][tokens[:-1]]
    _, hs = jaxrnn.unroll(params["rnn"], None, xs)
    logits = hs @ params["w_out"] + params["b_out"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[1:]).mean()


def sample_batch(key: jax.Array, data: jax.Array, batch_size: int, seq_len: int) -> jax.Array:
    """Random windows of ``seq_len + 1`` characters, time-major: (seq_len + 1, batch).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> sample_batch(jax.random.key(0), jnp.arange(100), batch_size=3, seq_len=8).shape
      (9, 3)
    """
    starts = jax.random.randint(key, (batch_size,), 0, data.shape[0] - seq_len)
    return data[starts[:, None] + jnp.arange(seq_len + 1)].T


@functools.partial(jax.jit, static_argnames="length")
def generate(
    params: Params, key: jax.Array, prompt: jax.Array, length: int, temperature: float
) -> jax.Array:
    """Read ``prompt`` (token ids), then sample ``length`` tokens one step at a time."""
    carry = jaxrnn.init_carry(params["rnn"])
    carry, hs = jaxrnn.unroll(params["rnn"], carry, params["embedding"][prompt])
    logits = hs[-1] @ params["w_out"] + params["b_out"]

    def step(state, key):
        carry, logits = state
        # Dividing the logits by the temperature sharpens (< 1) or flattens (> 1) them.
        token = jax.random.categorical(key, logits / temperature)
        carry, h = jaxrnn.cell_step(params["rnn"], carry, params["embedding"][token])
        return (carry, h @ params["w_out"] + params["b_out"]), token

    _, tokens = jax.lax.scan(step, (carry, logits), jax.random.split(key, length))
    return tokens


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jaxrnn.demo",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    parser.add_argument("--seq-len", type=int, default=64, help="characters per window (BPTT)")
    parser.add_argument("--embed-size", type=int, default=32, help="character vector size")
    parser.add_argument("--hidden-size", type=int, default=256, help="LSTM state size")
    parser.add_argument("--num-layers", type=int, default=1, help="stacked LSTM layers")
    parser.add_argument("--learning-rate", type=float, default=1e-2, help="Adam step size")
    parser.add_argument("--seed", type=int, default=0, help="seeds init, batches, sampling")
    parser.add_argument("--prompt", default="The ", help="text the sample continues")
    parser.add_argument("--generate-length", type=int, default=400, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=0.7, help="< 1: safer, > 1: wilder")
    args = parser.parse_args(argv)
    if not args.prompt:
        parser.error("--prompt must not be empty")
    if args.temperature <= 0:
        parser.error("--temperature must be positive")
    if args.learning_rate <= 0:
        parser.error("--learning-rate must be positive")
    sizes = ("batch_size", "seq_len", "embed_size", "hidden_size", "num_layers", "generate_length")
    for name in sizes:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int")
    if args.steps < 0:
        parser.error("--steps must be >= 0")
    return args


def main(argv: list[str] | None = None) -> Result:
    """Train, report held-out loss before and after, and print generated text."""
    args = parse_args(argv)
    corpus = load_corpus()
    vocab = sorted(set(corpus))
    index = {char: i for i, char in enumerate(vocab)}
    missing = sorted(set(args.prompt) - set(vocab))
    if missing:
        raise SystemExit(f"--prompt: characters {missing} do not occur in the corpus")
    data = jnp.array([index[char] for char in corpus], dtype=jnp.int32)
    # The last tenth is never trained on: its loss shows what the model learned, not memorized.
    split = len(data) * 9 // 10
    train_data, held_out = data[:split], data[split:]
    num_windows = min(64, len(held_out) // (args.seq_len + 1))
    held_out = held_out[: num_windows * (args.seq_len + 1)].reshape(num_windows, -1).T

    init_key, train_key, sample_key = jax.random.split(jax.random.key(args.seed), 3)
    params = init_model(init_key, len(vocab), args.embed_size, args.hidden_size, args.num_layers)
    # Clipping the gradient norm keeps an occasional exploding BPTT gradient from derailing.
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.learning_rate))
    opt_state = optimizer.init(params)

    @jax.jit
    def train_step(params, opt_state, key, data):
        tokens = sample_batch(key, data, args.batch_size, args.seq_len)
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    evaluate = jax.jit(loss_fn)
    initial_nats = float(evaluate(params, held_out))
    print(f"corpus: {len(corpus):,} characters, {len(vocab)} distinct; model: {params['rnn']}")
    with tqdm(range(args.steps), desc="training") as progress:
        for step in progress:
            key = jax.random.fold_in(train_key, step)
            params, opt_state, loss = train_step(params, opt_state, key, train_data)
            progress.set_postfix(bits_per_char=f"{float(loss) * BITS_PER_NAT:.3f}", refresh=False)
    final_nats = float(evaluate(params, held_out))

    prompt = jnp.array([index[char] for char in args.prompt])
    tokens = generate(params, sample_key, prompt, args.generate_length, args.temperature)
    text = args.prompt + "".join(vocab[t] for t in tokens.tolist())
    initial_bits, final_bits = initial_nats * BITS_PER_NAT, final_nats * BITS_PER_NAT
    print(
        f"held-out loss: {initial_bits:.3f} -> {final_bits:.3f} bits per character "
        f"({initial_nats:.3f} -> {final_nats:.3f} nats)"
    )
    print(f"sample (temperature {args.temperature}):\n{text}")
    return Result(initial_bits, final_bits, text)


if __name__ == "__main__":
    main()
