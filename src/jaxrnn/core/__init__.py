"""The core's implementation: checks, params, composites, unrolling, methods, hand-written
derivatives, initialization and dropout. Its public names are re-exported by ``jaxrnn``
(and the method objects by ``jaxrnn.methods``); import them from there."""
