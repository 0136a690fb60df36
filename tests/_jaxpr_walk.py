"""Walking jaxprs in the CPU tests: which primitives a traced function binds."""

import jax

try:
    from jax.extend import core as jax_core
    jax_core.jaxprs_in_params  # noqa: B018
except (ImportError, AttributeError):  # older JAX
    jax_core = jax.core


def count_prims(jaxpr, name):
    """Equations named `name` in a jaxpr, sub-jaxprs (pjit, scan, while...) included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name == name
        for sub in jax_core.jaxprs_in_params(eqn.params):
            count += count_prims(sub, name)
    return count


def prim_names(jaxpr):
    """The names of every primitive a jaxpr binds, sub-jaxprs included."""
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jax_core.jaxprs_in_params(eqn.params):
            names |= prim_names(sub)
    return names
