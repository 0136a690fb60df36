"""Shared test setup: a `gpu` marker that skips, with its reason, where no SM90 GPU is."""

import functools

import jax
import pytest


@functools.lru_cache(maxsize=None)
def sm90_gpu_reason():
    """None if device 0 is an SM90 GPU, else why the GPU tests cannot run."""
    try:
        devices = jax.devices()
    except RuntimeError as e:  # pragma: no cover
        return f"no JAX devices: {e}"
    dev = devices[0]
    if dev.platform != "gpu":
        return f"needs an SM90 GPU; JAX's default device is {dev.platform}"
    cc = getattr(dev, "compute_capability", None)
    if cc is not None and str(cc) != "9.0":
        return f"needs an SM90 GPU; device 0 is sm_{cc}"
    return None


def pytest_collection_modifyitems(config, items):
    reason = sm90_gpu_reason()
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
