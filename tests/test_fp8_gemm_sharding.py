"""fp8_gemm_nt under sharding, on 8 host CPU devices (a 2x4 mesh, axes "x" and "y").

The device count must be fixed before JAX initialises, which this process (and the
shared conftest) has already done, so the checks run once in a fresh interpreter
(tests/_sharding_worker.py, with XLA_FLAGS=--xla_force_host_platform_device_count=8
and JAX_PLATFORMS=cpu) that reports facts as JSON; each test here asserts on one case.

For both AxisType.Explicit and AxisType.Auto meshes:
  - M-, N-, M-and-N-sharded operands (N per shard whole 128-blocks): the result equals
    the unsharded result bitwise, has the expected PartitionSpec, and the compiled HLO
    has no all-gather (the operands stay local);
  - K-sharded operands: the result matches (calc_diff < 1e-4) and the HLO all-reduces;
  - shard_map with every axis manual: the per-shard call matches the unsharded result;
  - vmap over a sharded batch axis, an addend `c`, and an N split that would cut a
    128-block of B's scales (correct, whatever the layout chosen).
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

_WORKER = pathlib.Path(__file__).with_name("_sharding_worker.py")


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ)
    env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env.pop("JAX_ENABLE_X64", None)
    proc = subprocess.run([sys.executable, str(_WORKER)], env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"sharding worker exited with {proc.returncode}:\n{proc.stderr[-6000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"sharding worker printed no JSON:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(lines[-1])
    assert data["devices"] == 8, f"worker saw {data['devices']} devices, expected 8"
    return data["cases"]


def _case(report, name):
    assert name in report, f"worker has no case {name}"
    facts = report[name]
    if "error" in facts:
        pytest.fail(f"{name} raised in the worker:\n{facts['error']}")
    assert facts["dtype"] == "bfloat16"
    return facts


AXIS_TYPES = ["Explicit", "Auto"]

# name -> expected result spec ([M, N]); None = replicated on that dimension.
LOCAL_CASES = {
    "M": ["x", None],
    "N": [None, "y"],
    "MN": ["x", "y"],
    "M_xy": [["x", "y"], None],   # M over both mesh axes (8 shards)
}

REDUCE_CASES = {
    "K": [None, None],
    "MK": ["x", None],
}


@pytest.mark.parametrize("name", sorted(LOCAL_CASES))
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_local_sharding_is_exact_and_gathers_nothing(report, axis_type, name):
    facts = _case(report, f"{axis_type}/{name}")
    assert facts["bitwise_equal"], f"differs from the unsharded result (calc_diff {facts['calc_diff']})"
    assert facts["spec"] == LOCAL_CASES[name], f"result spec {facts['spec']}"
    coll = facts["collectives"]
    assert not coll["all-gather"], "compiled HLO all-gathers an operand"
    assert not coll["all-to-all"] and not coll["collective-permute"], coll
    assert not coll["all-reduce"], "M/N-sharded GEMM should need no reduction"


@pytest.mark.parametrize("name", sorted(REDUCE_CASES))
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_k_sharding_reduces(report, axis_type, name):
    facts = _case(report, f"{axis_type}/{name}")
    assert facts["calc_diff"] < 1e-4, f"calc_diff {facts['calc_diff']}"  # NaN fails too
    assert facts["spec"] == REDUCE_CASES[name], f"result spec {facts['spec']}"
    coll = facts["collectives"]
    assert coll["all-reduce"] or coll["reduce-scatter"], "K-sharded GEMM must reduce partial sums"
    assert not coll["all-gather"], "compiled HLO all-gathers an operand"


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_vmap_over_sharded_batch(report, axis_type):
    facts = _case(report, f"{axis_type}/vmap_LN")
    assert facts["shape"] == [4, 32, 512]
    assert facts["bitwise_equal"]
    assert facts["spec"] == ["x", None, "y"]
    assert not facts["collectives"]["all-gather"]


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_n_split_inside_scale_block_is_still_correct(report, axis_type):
    facts = _case(report, f"{axis_type}/N_unaligned")
    assert facts["shape"] == [64, 256]
    assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_shard_map_local_blocks(report, axis_type):
    facts = _case(report, f"{axis_type}/shard_map_MN")
    assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"
    assert facts["spec"] == ["x", "y"]


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_shard_map_k_partial_sums(report, axis_type):
    facts = _case(report, f"{axis_type}/shard_map_K")
    assert facts["calc_diff"] < 1e-4, f"calc_diff {facts['calc_diff']}"
    assert facts["spec"] == ["x", None]
