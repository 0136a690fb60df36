"""The dense GEMMs under sharding, on 8 host CPU devices (a 2x4 mesh, axes "x" and "y").

The device count must be fixed before JAX initialises, which this process (and the
shared conftest) has already done, so the checks run once in a fresh interpreter
(tests/_sharding_worker.py, with XLA_FLAGS=--xla_force_host_platform_device_count=8
and JAX_PLATFORMS=cpu) that reports facts as JSON; each test here asserts on one case.

For both AxisType.Explicit and AxisType.Auto meshes:
  - fp8_gemm_nt with M-, N-, M-and-N-sharded operands (N per shard whole 128-blocks):
    the result equals the unsharded result bitwise, has the expected PartitionSpec, and
    the compiled HLO has no all-gather (the operands stay local);
  - K-sharded operands: the result matches (calc_diff < 1e-4) and the HLO all-reduces;
  - shard_map with every axis manual: the per-shard call matches the unsharded result;
  - vmap over a sharded batch axis, and an N split that would cut a 128-block of B's
    scales (correct, whatever the layout chosen);
  - an addend c (bf16 or f32, sharded like D) with bf16 or f32 output: local when M/N
    are sharded; with K sharded, c is added once, after the partial sums are reduced;
  - the 1D1D recipe (per-row B scales), whose N may be split inside a 128-block;
  - fp8_gemm_tn (operands stored K-first, sharded on M and N in that orientation);
  - bf16_gemm_{nt,nn,tn,tt} sharded on M and N (local) and on K (reduced), and with c.
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
    proc = subprocess.run([sys.executable, str(_WORKER)], check=False, env=env, capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"sharding worker exited with {proc.returncode}:\n{proc.stderr[-6000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"sharding worker printed no JSON:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(lines[-1])
    assert data["devices"] == 8, f"worker saw {data['devices']} devices, expected 8"
    return data["cases"]


def _case(report, name, dtype="bfloat16"):
    assert name in report, f"worker has no case {name}"
    facts = report[name]
    if "error" in facts:
        pytest.fail(f"{name} raised in the worker:\n{facts['error']}")
    assert facts["dtype"] == dtype
    return facts


def _assert_local(facts):
    coll = facts["collectives"]
    assert not coll["all-gather"], "compiled HLO all-gathers an operand"
    assert not coll["all-to-all"] and not coll["collective-permute"], coll
    assert not coll["all-reduce"] and not coll["reduce-scatter"], "an M/N-sharded GEMM needs no reduction"


def _assert_reduces(facts):
    coll = facts["collectives"]
    assert coll["all-reduce"] or coll["reduce-scatter"], "a K-sharded GEMM must reduce partial sums"
    assert not coll["all-gather"], "compiled HLO all-gathers an operand"


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


# name -> (out dtype, expected result spec, reduced over K)
C_CASES = {
    "c_M": ("bfloat16", ["x", None], False),
    "c_MN_f32": ("float32", ["x", "y"], False),
    "c_K": ("bfloat16", [None, None], True),
    "c_MK_f32": ("float32", ["x", None], True),
}


@pytest.mark.parametrize("name", sorted(C_CASES))
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_with_c(report, axis_type, name):
    """D = C + A @ B sharded: exact when local; with K reduced, C is added once (adding
    it per shard would be off by 3 C), after the FP32 partial sums are reduced."""
    dtype, spec, reduced = C_CASES[name]
    facts = _case(report, f"{axis_type}/{name}", dtype)
    assert facts["spec"] == spec, f"result spec {facts['spec']}"
    if reduced:
        assert facts["calc_diff"] < (1e-10 if dtype == "float32" else 1e-5), f"calc_diff {facts['calc_diff']}"
        _assert_reduces(facts)
    else:
        assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"
        _assert_local(facts)


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_1d1d_n_split_inside_a_block(report, axis_type):
    """Per-row B scales: 64 rows of N per shard stay local (no 128-block to keep whole)."""
    facts = _case(report, f"{axis_type}/1d1d_MN", "float32")
    assert facts["shape"] == [64, 256]
    assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"
    assert facts["spec"] == ["x", "y"], f"result spec {facts['spec']}"
    _assert_local(facts)


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_fp8_tn_stays_local(report, axis_type):
    facts = _case(report, f"{axis_type}/fp8_tn_MN")
    assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"
    assert facts["spec"] == ["x", "y"], f"result spec {facts['spec']}"
    _assert_local(facts)


BF16_CASES = {"MN": (["x", "y"], False), "K": ([None, None], True), "MK": (["x", None], True)}


@pytest.mark.parametrize("name", sorted(BF16_CASES))
@pytest.mark.parametrize("layout", ["nt", "nn", "tn", "tt"])
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_bf16_layouts(report, axis_type, layout, name):
    """Each layout, operands sharded in their stored orientation. Local shards of an
    MN-major A may be summed in another order by XLA:CPU's dot (smaller M), so the local
    cases are equal up to FP32 accumulation there, bitwise for a K-major A."""
    spec, reduced = BF16_CASES[name]
    facts = _case(report, f"{axis_type}/bf16_{layout}_{name}")
    assert facts["spec"] == spec, f"result spec {facts['spec']}"
    if reduced:
        assert facts["calc_diff"] < 1e-5, f"calc_diff {facts['calc_diff']}"
        _assert_reduces(facts)
    else:
        if layout in ("nt", "nn"):
            assert facts["bitwise_equal"], f"calc_diff {facts['calc_diff']}"
        assert facts["calc_diff"] < 1e-8, f"calc_diff {facts['calc_diff']}"
        _assert_local(facts)


@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_bf16_with_c_k_reduced(report, axis_type):
    facts = _case(report, f"{axis_type}/bf16_tn_c_MK_f32", "float32")
    assert facts["spec"] == ["x", None], f"result spec {facts['spec']}"
    assert facts["calc_diff"] < 1e-10, f"calc_diff {facts['calc_diff']}"
    _assert_reduces(facts)
