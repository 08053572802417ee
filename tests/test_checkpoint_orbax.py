"""Params pytrees save and restore with orbax, keeping their types and static fields."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import jaxrnn
from jaxrnn.precision import mixed_precision

KEY = jax.random.key(0)

PARAMS = {
    "lstm-proj": lambda: jaxrnn.init_params(KEY, "lstm", 3, 8, proj_size=4),
    "gru-no-bias-cho": lambda: jaxrnn.init_params(KEY, "gru", 3, 4, bias=False, reset_after=False),
    "rnn-relu-stack-bidirectional": lambda: jaxrnn.init_params(
        KEY, "rnn", 3, 4, num_layers=2, bidirectional=True, dropout=0.25, activation="relu"
    ),
    "bfloat16-params": lambda: jaxrnn.init_params(KEY, "lstm", 3, 4, dtype=jnp.bfloat16),
    "mixed-precision": lambda: mixed_precision(jaxrnn.init_params(KEY, "gru", 3, 4)),
    "train-state": lambda: {
        "params": (params := jaxrnn.init_params(KEY, "lstm", 3, 4, num_layers=2)),
        "opt_state": optax.adam(1e-3).init(params),
        "step": jnp.array(7),
    },
}


@pytest.fixture(scope="module")
def checkpointer():
    with ocp.StandardCheckpointer() as checkpointer:
        yield checkpointer


def _save(checkpointer, path, tree):
    checkpointer.save(path, tree)
    checkpointer.wait_until_finished()


@pytest.mark.parametrize("name", PARAMS)
def test_restore_into_template_keeps_types(name, checkpointer, tmp_path):
    tree = PARAMS[name]()
    _save(checkpointer, tmp_path / "ckpt", tree)
    # The template is abstract (shapes and dtypes only): no arrays are computed for it.
    template = jax.eval_shape(PARAMS[name])
    restored = checkpointer.restore(tmp_path / "ckpt", template)
    # Same tree structure means same params classes and same static fields
    # (reset_after, activation, dropout, merge, compute_dtype).
    assert jax.tree.structure(restored) == jax.tree.structure(tree)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(tree), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_restored_params_run(checkpointer, tmp_path):
    params = PARAMS["rnn-relu-stack-bidirectional"]()
    _save(checkpointer, tmp_path / "ckpt", params)
    restored = checkpointer.restore(tmp_path / "ckpt", jax.eval_shape(lambda: params))
    xs = jnp.ones((5, 2, 3))
    np.testing.assert_array_equal(
        jaxrnn.unroll(restored, None, xs)[1], jaxrnn.unroll(params, None, xs)[1]
    )


def test_restore_without_template_gives_field_names(checkpointer, tmp_path):
    # Without a template orbax cannot know the classes: it gives nested dicts keyed by
    # field name (static fields are not saved). Restore into a template to get params.
    _save(checkpointer, tmp_path / "ckpt", PARAMS["gru-no-bias-cho"]())
    restored = checkpointer.restore(tmp_path / "ckpt")
    assert isinstance(restored, dict)
    assert set(restored) == {"w_x", "w_h", "b_x", "b_h"}
    assert restored["w_h"].shape == (4, 12)


def test_template_of_other_shapes_is_refused(checkpointer, tmp_path):
    _save(checkpointer, tmp_path / "ckpt", jaxrnn.init_params(KEY, "gru", 3, 4))
    wrong = jax.eval_shape(lambda: jaxrnn.init_params(KEY, "gru", 3, 5))
    with pytest.raises(ValueError, match=r"(?i)shape"):
        checkpointer.restore(tmp_path / "ckpt", wrong)
