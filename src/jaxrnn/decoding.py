"""One-to-many generation: feed each step's output back as the next input.

Generation is [`cell_step`][jaxrnn.cell_step] in a ``lax.scan`` whose input at step ``t + 1``
is made from the output at step ``t``. The three choices a user makes are functions:

- ``readout``: the cell output ``y_t`` to scores (logits, or a prediction);
- ``choose``: scores to an output: ``"argmax"`` (greedy), ``"sample"`` (from
  ``softmax(logits / temperature)`` with an explicit ``key``), ``"identity"`` (continuous
  values fed back as they are), or any ``choose(scores, key)``;
- ``embed``: an output to the next input (an embedding table lookup, ``one_hot``...).

With an ``end_token``, a sequence that has emitted it is *finished*: from the next step
on it emits ``pad_token`` and its carry stops changing, so one fixed-length, jit-friendly
loop serves a whole batch of sequences that end at different times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxrnn.core.checks import (
    check_array,
    check_bool,
    check_callable,
    check_features,
    check_int,
    check_key,
    check_number,
    check_token,
    fail,
    shape_text,
    time_first,
)
from jaxrnn.core.unrolling import cell_step, init_carry

__all__ = ["CHOOSERS", "decoded_lengths", "generate", "rollout"]


def _argmax(scores: jax.Array, key: jax.Array | None, temperature: float) -> jax.Array:
    return jnp.argmax(scores, axis=-1)


def _sample(scores: jax.Array, key: Any, temperature: float) -> jax.Array:
    return jax.random.categorical(key, scores / temperature, axis=-1)


def _identity(scores: jax.Array, key: jax.Array | None, temperature: float) -> jax.Array:
    return scores


#: Built-in ways to turn scores into an output: ``name -> f(scores, key, temperature)``.
CHOOSERS: dict[str, Callable[[jax.Array, Any, float], jax.Array]] = {
    "argmax": _argmax,
    "sample": _sample,
    "identity": _identity,
}


def _keep_finished(finished: jax.Array, new: Any, old: Any) -> Any:
    def pick(n: jax.Array, o: jax.Array) -> jax.Array:
        mask = finished.reshape(finished.shape + (1,) * (n.ndim - finished.ndim))
        return jnp.where(mask, o, n)

    return jax.tree.map(pick, new, old)


def generate(
    params: Any,
    carry: Any,
    first_input: ArrayLike,
    num_steps: int,
    *,
    readout: Callable[[jax.Array], jax.Array] | None = None,
    choose: str | Callable[[jax.Array, jax.Array | None], jax.Array] = "argmax",
    embed: Callable[[jax.Array], jax.Array] | None = None,
    key: jax.Array | None = None,
    temperature: float = 1.0,
    end_token: int | None = None,
    pad_token: int = 0,
    time_major: bool = True,
) -> tuple[Any, jax.Array]:
    """Run ``params`` for ``num_steps``, each step's chosen output becoming the next input.

    Equivalent to this loop (without ``end_token``):

        x = first_input
        for t in range(num_steps):
            carry, y = cell_step(params, carry, x)
            out = choose(readout(y), key_t)      # key_t: the t-th of split(key, num_steps)
            x = embed(out)
            outputs.append(out)
        return carry, stack(outputs)

    With ``end_token``: once a sequence has emitted ``end_token`` it emits ``pad_token``
    and keeps its carry for every later step.

    Args:
      params: a cell or a [`stack`][jaxrnn.stack] of unidirectional layers.
      carry: the starting state (e.g. an encoder's final state, or a state after a
        prompt), or ``None`` for the zero state.
      first_input: ``x_0`` of shape ``(*batch, input_size)``, e.g. the embedding of a
        start token.
      num_steps: how many outputs to generate (static: the loop has a fixed length).
      readout: ``y (*batch, output_size) -> scores (*batch, ...)``, e.g.
        ``lambda y: jaxrnn.heads.readout(readout_params, y)``; ``None`` uses ``y`` itself.
      choose: ``"argmax"`` (greedy), ``"sample"`` (needs ``key``), ``"identity"``
        (feed the scores back, for continuous outputs), or a function
        ``choose(scores, key_t) -> output`` (``key_t`` is ``None`` without ``key``).
      embed: ``output -> next input (*batch, input_size)``, e.g.
        ``lambda token: table[token]``; ``None`` feeds the output back unchanged.
      key: PRNG key for ``"sample"`` or a custom ``choose``; split once per step.
      temperature: for ``"sample"``: logits are divided by it (``< 1`` sharper).
      end_token: token id (an int >= 0) that ends a sequence (for token outputs), or
        ``None``.
      pad_token: token id (an int >= 0) emitted by finished sequences.
      time_major: ``False`` returns ``outputs`` batch-major, ``(*batch, num_steps, ...)``.

    Returns:
      ``(carry, outputs)``: the final carry (for finished sequences, the carry after the
      step that emitted ``end_token``) and ``outputs`` of shape ``(num_steps, *batch)``
      for tokens or ``(num_steps, *batch, ...)`` for continuous outputs.
      [`rollout`][jaxrnn.decoding.rollout] also returns each step's scores.

    Example:
      >>> import functools, jax, jax.numpy as jnp, jaxrnn
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> cell = jaxrnn.init_params(k1, "gru", 8, 16)
      >>> out = jaxrnn.heads.init_readout(k2, 16, 5)               # 5 tokens
      >>> table = jax.random.normal(k3, (5, 8))              # token embeddings
      >>> run = jax.jit(functools.partial(
      ...     jaxrnn.decoding.generate, num_steps=10, choose="sample", temperature=0.8,
      ...     readout=lambda y: jaxrnn.heads.readout(out, y), embed=lambda t: table[t]))
      >>> carry, tokens = run(cell, None, table[jnp.zeros(3, int)], key=jax.random.key(1))
      >>> tokens.shape, carry.shape
      ((10, 3), (3, 16))
    """
    carry, outputs, _ = rollout(
        params,
        carry,
        first_input,
        num_steps,
        readout=readout,
        choose=choose,
        embed=embed,
        key=key,
        temperature=temperature,
        end_token=end_token,
        pad_token=pad_token,
        time_major=time_major,
        where="generate",
    )
    return carry, outputs


def rollout(
    params: Any,
    carry: Any,
    first_input: ArrayLike,
    num_steps: int,
    *,
    readout: Callable[[jax.Array], jax.Array] | None = None,
    choose: str | Callable[[jax.Array, jax.Array | None], jax.Array] = "argmax",
    embed: Callable[[jax.Array], jax.Array] | None = None,
    key: jax.Array | None = None,
    temperature: float = 1.0,
    end_token: int | None = None,
    pad_token: int = 0,
    time_major: bool = True,
    where: str = "rollout",
) -> tuple[Any, jax.Array, jax.Array]:
    """[`generate`][jaxrnn.decoding.generate] that also returns the scores of every step:
    the decoder fed its own outputs, differentiable through the scores.

    The same loop, keeping ``scores_t = readout(y_t)``; finished sequences (after
    ``end_token``) get zero scores. Free-running training (the decoder fed its own
    predictions, as in Flax's seq2seq example) is a loss on these scores: the tokens are
    discrete, so gradients flow through the scores, the carries and the embedding, never
    through the choice. Works on any cell or stack of unidirectional layers with any
    readout and embedding, and on an attention decoder bound to its memory.

    Every argument is ``generate``'s, plus:

    Args:
      where: the function name errors report.

    Returns:
      ``(carry, outputs, scores)``: ``generate``'s two, and ``scores`` of shape
      ``(num_steps, *batch, ...)`` (batch-major with ``time_major=False``).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxrnn
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> cell, table = jaxrnn.init_params(k1, "gru", 4, 8), jax.random.normal(k2, (6, 4))
      >>> head = jaxrnn.heads.init_readout(k3, 8, 6)
      >>> targets = jnp.array([[1, 2], [3, 4], [5, 0]])   # (time, batch)
      >>> def free_running_loss(cell, head, table):
      ...     _, _, logits = jaxrnn.decoding.rollout(
      ...         cell, None, table[jnp.zeros(2, int)], 3, embed=lambda t: table[t],
      ...         readout=lambda y: jaxrnn.heads.readout(head, y))
      ...     return jaxrnn.losses.sequence_softmax_cross_entropy(logits, targets)
      >>> grads = jax.grad(free_running_loss, argnums=(0, 1, 2))(cell, head, table)
      >>> bool(jnp.any(grads[0].w_h != 0))
      True
    """
    check_bool(where, "time_major", time_major)
    num_steps = check_int(where, "num_steps", num_steps)
    check_callable(where, "readout", readout, optional=True)
    check_callable(where, "embed", embed, optional=True)
    if end_token is not None:
        end_token = check_token(where, "end_token", end_token)
    pad_token = check_token(where, "pad_token", pad_token)
    if isinstance(choose, str):
        if choose not in CHOOSERS:
            options = ", ".join(repr(c) for c in CHOOSERS)
            fail(where, "choose", f"be one of {options} or a function", repr(choose))
        if choose == "sample" and key is None:
            fail(where, "key", "be a PRNG key with choose='sample'", "None", TypeError)
        if choose != "sample" and key is not None:
            fail(where, "key", f"be None with choose={choose!r} (it is not random)", "a key")
        if choose == "sample":  # a traced temperature's value is not checked
            check_number(where, "temperature", temperature, "be > 0", lambda t: t > 0)
        builtin = CHOOSERS[choose]

        def choose_fn(scores, k):
            return builtin(scores, k, temperature)
    elif callable(choose):
        choose_fn = choose
    else:
        fail(where, "choose", "be a name or a function", type(choose).__name__, TypeError)
    if key is not None:
        check_key(where, key)
    readout_fn = readout if readout is not None else (lambda y: y)
    embed_fn = embed if embed is not None else (lambda out: out)

    x = check_array(where, "first_input", first_input)
    if not hasattr(params, "input_shape"):
        fail(where, "params", "be jaxrnn params", type(params).__name__, TypeError)
    batch_shape = check_features(where, "first_input", x, params.input_shape, ())
    if carry is None:
        carry = init_carry(params, batch_shape)
    finished = jnp.zeros(batch_shape, bool)
    keys = None if key is None else jax.random.split(key, num_steps)

    def body(state, step_key):
        carry, x, finished = state
        new_carry, y = cell_step(params, carry, x)
        scores = readout_fn(y)
        out = choose_fn(scores, step_key)
        if not isinstance(out, jax.Array):
            fail(where, "choose", "return an array (the step's output)", type(out).__name__)
        if end_token is not None:
            mask = finished.reshape(finished.shape + (1,) * (scores.ndim - finished.ndim))
            scores = jnp.where(mask, jnp.zeros_like(scores), scores)
            if out.shape != batch_shape:
                fail(
                    where,
                    "end_token",
                    f"be used with token outputs of the batch shape {shape_text(batch_shape)}",
                    f"outputs of shape {shape_text(out.shape)}",
                )
            out = jnp.where(finished, jnp.asarray(pad_token, out.dtype), out)
            new_carry = _keep_finished(finished, new_carry, carry)
            finished = finished | (out == end_token)
        next_x = embed_fn(out)
        if jnp.shape(next_x) != x.shape:
            fail(
                where,
                "embed",
                f"give the next input of shape {shape_text(x.shape)}",
                shape_text(jnp.shape(next_x)),
            )
        return (new_carry, next_x.astype(x.dtype), finished), (out, scores)

    state = (carry, x, finished)
    (carry, _, _), (outputs, scores) = jax.lax.scan(body, state, keys, length=num_steps)
    if not time_major:
        batch_ndim = len(batch_shape)
        outputs = jnp.moveaxis(outputs, 0, batch_ndim)
        scores = jnp.moveaxis(scores, 0, batch_ndim)
    return carry, outputs, scores


def decoded_lengths(tokens: ArrayLike, end_token: int, *, time_major: bool = True) -> jax.Array:
    """Length of each generated sequence: up to and including its first ``end_token``.

    $$
    \\mathrm{length}_b = \\min(\\{t + 1 : \\mathrm{tokens}_{t,b} = \\mathrm{end}\\}
    \\cup \\{T\\})
    $$

    Args:
      tokens: ``(time, *batch)`` integer outputs of [`generate`][jaxrnn.decoding.generate]
        (``(*batch, time)`` with ``time_major=False``).
      end_token: the end token.
      time_major: ``False`` for batch-major ``tokens``, as
        ``generate(..., time_major=False)`` gives them.

    Returns:
      Integer lengths of shape ``batch``; ``time`` where no end token was emitted.

    Example:
      >>> import jax.numpy as jnp, jaxrnn
      >>> tokens = jnp.array([[5, 2], [1, 1], [0, 3]])   # (time, batch); end token 1
      >>> jaxrnn.decoding.decoded_lengths(tokens, end_token=1)
      Array([2, 2], dtype=int32)
      >>> jaxrnn.decoding.decoded_lengths(tokens.T, end_token=1, time_major=False)
      Array([2, 2], dtype=int32)
    """
    tokens = check_array("decoded_lengths", "tokens", tokens)
    check_bool("decoded_lengths", "time_major", time_major)
    if tokens.ndim < 1:
        expected = "have shape (time, ...)" if time_major else "have shape (..., time)"
        fail("decoded_lengths", "tokens", expected, shape_text(tokens.shape))
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        fail("decoded_lengths", "tokens", "have an integer dtype", str(tokens.dtype), TypeError)
    end_token = check_token("decoded_lengths", "end_token", end_token)
    tokens = time_first(tokens, time_major, 0)
    is_end = tokens == end_token
    first = jnp.argmax(is_end, axis=0)
    return jnp.where(jnp.any(is_end, axis=0), first + 1, tokens.shape[0]).astype(jnp.int32)
