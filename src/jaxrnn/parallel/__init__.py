"""Parallel-in-time unrolling: scans for linear recurrences, Newton (DEER) for nonlinear ones.

Two ideas, both behind ``unroll(..., method=...)``:

**A linear recurrence is a scan.** If ``h_t = a_t * h_{t-1} + b_t``, a step is the affine
map ``h -> a_t h + b_t``, and composing two of them gives another one:
``(a_2, b_2) ∘ (a_1, b_1) = (a_2 a_1, a_2 b_1 + b_2)``. Composition is associative, so
all prefixes ``h_1 ... h_T`` follow from ``jax.lax.associative_scan`` in ``O(log T)``
depth (``method="parallel"``), for the cells that are linear in their state
(``LinearCell``: ``"mingru"``, ``"minlstm"``, ``"lru"``, ``"rglru"``), and for the cells
with a parallel form of their own (``ParallelFormCell``: ``"mlstm"``).

**A nonlinear recurrence is a root-finding problem over the trajectory** (DEER, Lim et al.
2024). Write the whole trajectory ``H = (h_1 ... h_T)`` as the unknown of
``h_t = f(h_{t-1}, x_t)``. Newton's method linearizes every step around the current guess,
``h_t ≈ f(ĥ_{t-1}) + J_t (h_{t-1} - ĥ_{t-1})`` with ``J_t = ∂f/∂h(ĥ_{t-1}, x_t)``, which
is a *linear* recurrence in ``h``: one parallel scan per Newton iteration
(``method="deer"``). With only the diagonal of ``J_t`` (quasi-DEER, Gonzalez et al. 2024)
the scan is elementwise and much cheaper, at the price of more iterations
(``method="quasi_deer"``). Whatever the Jacobian used, the first ``k`` steps are exact
after ``k`` iterations, so the iteration always ends within ``T`` iterations in exact
arithmetic; what the Jacobian buys is how much sooner. Gradients come from the implicit
function theorem at the solution, by a linear solve with the same (transposed, reversed)
scan, never by differentiating through the iterations.

**A step that cannot overflow** (ELK, Gonzalez et al. 2024): far from the solution the
products of ``J_t`` can explode. ``method="elk"`` / ``"quasi_elk"`` take instead the
Levenberg–Marquardt step ``argmin_h Σ_t |h_t - J_t h_{t-1} - b_t|² + λ Σ_t |h_t - ĥ_t|²``,
the mean of a Kalman smoother, itself two parallel scans (Särkkä & García-Fernández
2021). The solution, hence the gradient, is DEER's; the ``T``-iteration bound is lost.

Lengths and reverse follow [`unroll`][jaxrnn.unroll] exactly: masked steps are the identity
step (``a = 1, b = 0``) and emit zeros; a reversed run is the forward run of the
time-flipped sequence.
"""

from jaxrnn.core.methods import Method

# DEFAULT_STRATEGY, STRATEGIES and DEFAULT_TRUST_REGION stay reachable as before the split.
from jaxrnn.parallel.linear import DEFAULT_STRATEGY as DEFAULT_STRATEGY
from jaxrnn.parallel.linear import STRATEGIES as STRATEGIES
from jaxrnn.parallel.linear import Parallel, linear_scan
from jaxrnn.parallel.newton import (
    DEER,
    DEERConfig,
    DEERInfo,
    DEERNotConvergedError,
    deer_unroll,
)
from jaxrnn.parallel.newton import DEFAULT_TRUST_REGION as DEFAULT_TRUST_REGION

__all__ = [
    "DEER",
    "PRESETS",
    "DEERConfig",
    "DEERInfo",
    "DEERNotConvergedError",
    "Parallel",
    "deer_unroll",
    "linear_scan",
]

#: The presets that ``unroll(..., method=name)`` runs for each name.
PRESETS: dict[str, Method] = {
    "parallel": Parallel(),
    # Full-Jacobian Newton, raising when not converged.
    "deer": DEER(variant="full"),
    # Diagonal-Jacobian Newton (quasi-DEER): cheaper iterations, more of them.
    "quasi_deer": DEER(variant="diagonal", max_iter=500),
    # Full-Jacobian Levenberg-Marquardt steps by Kalman smoothing (ELK).
    "elk": DEER(variant="full", trust_region=DEFAULT_TRUST_REGION),
    # The same with diagonal Jacobians (quasi-ELK).
    "quasi_elk": DEER(variant="diagonal", max_iter=500, trust_region=DEFAULT_TRUST_REGION),
}
