"""Every method of ``unroll(..., method=...)``, as objects that carry their settings.

- [`Auto`][jaxrnn.core.methods.Auto] (``"auto"``, the default): per cell, the fastest
  measured;
- [`Sequential`][jaxrnn.core.methods.Sequential] (``"sequential"``): ``lax.scan`` of the
  step, every cell, the reference;
- [`HandDerivatives`][jaxrnn.core.methods.HandDerivatives] (``"fused"``): rnn, lstm and gru
  with hand-written derivatives;
- [`Parallel`][jaxrnn.parallel.Parallel] (``"parallel"``): an associative scan, for cells
  linear in their state;
- [`DEER`][jaxrnn.parallel.DEER] (``"deer"``, ``"quasi_deer"``, ``"elk"``,
  ``"quasi_elk"``): Newton's method over the trajectory;
- [`CuDNN`][jaxrnn.cudnn.CuDNN] (``"cudnn"``): LSTMs in one cuDNN call on a GPU.

A method that cannot run a cell raises [`MethodError`][jaxrnn.core.methods.MethodError]
naming the cell, the reason and what to use instead (``CuDNN`` alone falls back to
``lax.scan`` with a warning; see ``jaxrnn.core.methods``). A new method subclasses
[`Method`][jaxrnn.core.methods.Method] and defines ``unroll_cell``.

Example:
  >>> import jax, jax.numpy as jnp, jaxrnn
  >>> from jaxrnn.methods import DEER
  >>> params = jaxrnn.init_params(jax.random.key(0), "gru", 2, 4, bidirectional=True)
  >>> xs = jax.random.normal(jax.random.key(1), (12, 2))
  >>> _, ys = jaxrnn.unroll(params, None, xs, method=DEER(tol=1e-6, max_iter=50))
  >>> bool(jnp.allclose(ys, jaxrnn.unroll(params, None, xs, method="sequential")[1],
  ...                   atol=1e-5))
  True
"""

from jaxrnn.core.methods import (
    METHOD_NAMES,
    Auto,
    HandDerivatives,
    Method,
    MethodError,
    Run,
    Sequential,
    as_method,
)
from jaxrnn.cudnn import CuDNN
from jaxrnn.parallel import DEER, PRESETS, Parallel

__all__ = [
    "DEER",
    "METHOD_NAMES",
    "PRESETS",
    "Auto",
    "CuDNN",
    "HandDerivatives",
    "Method",
    "MethodError",
    "Parallel",
    "Run",
    "Sequential",
    "as_method",
]
