"""The C++ JIT core and the kernel instances, without a GPU.

  - NVCC compilation through the on-disk cache: keys, hits, atomic publish, errors;
  - every kernel instance the heuristics pick for the benchmark's shapes (M in {128, 4096}
    x the DeepSeek-V3 (N, K) pairs of `jaxgemm.bench`, 132 SMs as on an H100 SXM) for
      fp8 1D2D (block-scaled B) with BF16 output,
      fp8 1D1D (per-row B scales, the weight-gradient recipe) with FP32 output and FP32 C,
      bf16 in each of the 4 layouts nt, nn, tn, tt (A and B K- or MN-major), BF16 output,
    is a valid config, generates the template instance it names, compiles with
    `nvcc -arch=sm_90a`, and (where cuobjdump is available) its SASS uses the right
    tensor-core instruction (QGMMA for FP8, HGMMA for BF16, transposed operand flags
    exactly for the MN-major operands) and no local memory (LDL/STL).

The configs are deduplicated by the code they generate (the SM count, for one, is a
runtime argument, not part of the instance), which leaves about 30 instances: all are
compiled, in parallel, once per session. Should the heuristics ever produce more than
MAX_INSTANCES, only one instance per distinct (kind, block_m, block_n) is compiled, to keep
the suite's time bounded on a 2-core CI machine (each compile takes seconds to tens of
seconds there); the config checks still cover every shape.

One instance of each kind, and the transpose, also compiles with NVRTC (the JIT's fast
cold path), where libnvrtc is found (the toolkit's or the nvidia-cuda-nvrtc wheel's).
The development timeline build (JAXGEMM_EXP_TIMELINE) of an NT and a relayout FP8
instance compiles too, so that the tool does not rot.

Skipped where nvcc is not found (JAXGEMM_JIT_NVCC_COMPILER or <cuda_home>/bin/nvcc);
the SASS checks are skipped where cuobjdump (and nvdisasm beside it) is not found.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig
import threading

import pytest

import jaxgemm
from jaxgemm import _runtime
from jaxgemm.bench import DEEPSEEK_V3_NK

# ----------------------------------------------------------------------------- JIT core

def _nvcc_path():
    env = os.environ.get("JAXGEMM_JIT_NVCC_COMPILER")
    if env:
        return env if os.access(env, os.X_OK) else None
    path = os.path.join(_runtime.cuda_home(), "bin", "nvcc")
    return path if os.access(path, os.X_OK) else None


needs_nvcc = pytest.mark.skipif(_nvcc_path() is None,
                                reason=f"no nvcc (looked in {_runtime.cuda_home()}/bin and "
                                       "$JAXGEMM_JIT_NVCC_COMPILER)")

TINY = 'extern "C" __global__ void k(int* p) { *p = 1; }\n'
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def jit_cache(tmp_path, monkeypatch):
    """A private, empty JIT cache; the JIT configured with this install's paths."""
    cache = tmp_path / "jit"
    monkeypatch.setenv("JAXGEMM_JIT_CACHE_DIR", str(cache))
    for var in ("JAXGEMM_JIT_USE_NVRTC", "JAXGEMM_JIT_DEBUG", "JAXGEMM_JIT_PTXAS_VERBOSE",
                "JAXGEMM_JIT_PRINT_COMPILER_COMMAND"):
        monkeypatch.delenv(var, raising=False)
    _runtime.configure_jit()
    return cache


def _entries(cache):
    d = cache / "cache"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def _compile(name, src, arch="90a"):
    return _runtime.extension().compile_kernel(name, src, arch)


@needs_nvcc
class TestJitCache:
    def test_compile_then_hit(self, jit_cache):
        path, hit, secs = _compile("tiny", TINY)
        assert hit is False and secs > 0
        p = pathlib.Path(path)
        assert p.is_file() and p.stat().st_size > 0 and p.name == "kernel.cubin"
        assert p.read_bytes()[:4] == b"\x7fELF"
        entry = p.parent
        assert entry.parent == jit_cache / "cache"
        name, key = entry.name.rsplit(".", 1)
        assert name == "tiny" and HEX32.match(key), entry.name
        assert (jit_cache / "tmp").is_dir() and list((jit_cache / "tmp").iterdir()) == []
        path2, hit2, secs2 = _compile("tiny", TINY)
        assert (path2, hit2, secs2) == (path, True, 0.0)
        assert _entries(jit_cache) == [entry.name]

    def test_key_covers_source_name_and_arch(self, jit_cache):
        p1 = pathlib.Path(_compile("tiny", TINY)[0]).parent.name
        p2 = pathlib.Path(_compile("tiny", TINY.replace("= 1", "= 2"))[0]).parent.name
        p3 = pathlib.Path(_compile("tiny", TINY + "// comment\n")[0]).parent.name
        p4 = pathlib.Path(_compile("other", TINY)[0]).parent.name
        p5 = pathlib.Path(_compile("tiny", TINY, "90")[0]).parent.name
        keys = {p.rsplit(".", 1)[1] for p in (p1, p2, p3, p5)}
        assert len(keys) == 4, (p1, p2, p3, p5)
        assert p4.startswith("other.")
        assert len(_entries(jit_cache)) == 5

    def test_key_covers_library_version(self, jit_cache):
        ext = _runtime.extension()
        p1 = pathlib.Path(_compile("tiny", TINY)[0]).parent.name
        try:
            ext.set_paths(_runtime.kernel_include_dir(), _runtime.cutlass_include_dir(),
                          _runtime.cuda_home(), "0.0.0-test")
            p2 = pathlib.Path(_compile("tiny", TINY)[0]).parent.name
        finally:
            _runtime.configure_jit()
        assert p1 != p2

    def test_key_covers_extra_defines(self, jit_cache, monkeypatch):
        """JAXGEMM_JIT_DEFINES (kernel experiments) reach the compiler and the key."""
        p1 = pathlib.Path(_compile("tiny", TINY)[0]).parent.name
        monkeypatch.setenv("JAXGEMM_JIT_DEFINES", "JAXGEMM_TEST_A JAXGEMM_TEST_B=2")
        path, hit, _ = _compile("tiny", TINY + "#if JAXGEMM_TEST_B != 2\n#error no define\n#endif\n")
        assert not hit and pathlib.Path(path).parent.name != p1

    def test_cache_dir_is_read_per_call(self, jit_cache, tmp_path, monkeypatch):
        _compile("tiny", TINY)
        other = tmp_path / "other"
        monkeypatch.setenv("JAXGEMM_JIT_CACHE_DIR", str(other))
        path, hit, _ = _compile("tiny", TINY)
        assert not hit and pathlib.Path(path).is_relative_to(other)

    def test_nvcc_error(self, jit_cache):
        broken = 'extern "C" __global__ void k(int* p) { *p = undefined_symbol; }\n'
        with pytest.raises(RuntimeError, match=r"NVCC failed") as e:
            _compile("broken", broken)
        assert "undefined_symbol" in str(e.value)  # the compiler's log is in the message
        assert _entries(jit_cache) == []
        tmp = jit_cache / "tmp"
        assert not tmp.exists() or list(tmp.iterdir()) == [], "failed compile left its temp folder"
        # A later good compile still works.
        assert _compile("tiny", TINY)[1] is False

    def test_missing_nvcc(self, jit_cache, monkeypatch, tmp_path):
        monkeypatch.setenv("JAXGEMM_JIT_NVCC_COMPILER", str(tmp_path / "no" / "nvcc"))
        with pytest.raises(RuntimeError, match=r"nvcc not found"):
            _compile("tiny", TINY)

    @pytest.mark.parametrize("workers", [2, 4])
    def test_concurrent_compiles_publish_once(self, jit_cache, workers):
        src = TINY.replace("= 1", f"= {workers}")
        barrier = threading.Barrier(workers)
        results, errors = [], []

        def work():
            barrier.wait()
            try:
                results.append(_compile("race", src))
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len({r[0] for r in results}) == 1
        assert any(not r[1] for r in results)
        assert len(_entries(jit_cache)) == 1
        assert pathlib.Path(results[0][0]).stat().st_size > 0
        assert list((jit_cache / "tmp").iterdir()) == []

    def test_concurrent_processes_publish_once(self, jit_cache):
        """Two processes compiling one kernel: both succeed, one entry (rename is atomic)."""
        code = ("import sys; from jaxgemm import _runtime; _runtime.configure_jit(); "
                "print(_runtime.extension().compile_kernel('proc', sys.argv[1], '90a')[0])")
        src = TINY.replace("= 1", "= 77")
        procs = [subprocess.Popen([sys.executable, "-c", code, src], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
        assert len({o[0].strip() for o in outs}) == 1
        assert len(_entries(jit_cache)) == 1
        assert list((jit_cache / "tmp").iterdir()) == []


# ----------------------------------------------------------------------------- kernel instances

BENCH_MS = (128, 4096)
NUM_SMS = 132
SMEM_CAPACITY = 232448
MAX_INSTANCES = 36

# kind -> the heuristic's arguments beyond (m, n, k, batches, num_sms), and the public
# config function's keyword arguments that ask for the same kind.
KINDS = {
    "fp8_1d2d": {"op": "fp8", "sfb_per_row": False, "out_bytes": 2, "c_bytes": 0, "public": {}},
    "fp8_1d1d_f32": {"op": "fp8", "sfb_per_row": True, "out_bytes": 4, "c_bytes": 4,
                     "public": {"sfb_per_row": True, "out_dtype": "float32", "c_dtype": "float32"}},
    # B stored [K, N]: the heuristic transposes it in the kernel where that measured faster.
    "fp8_nn": {"op": "fp8", "sfb_per_row": False, "b_mn_major": True, "out_bytes": 2, "c_bytes": 0,
               "public": {"layout": "nn"}},
    # A stored [K, M]: read as stored into the register operand (a_regs).
    "fp8_tt": {"op": "fp8", "sfb_per_row": False, "a_mn_major": True, "out_bytes": 2, "c_bytes": 0,
               "public": {"layout": "tt"}},
    "fp8_tn": {"op": "fp8", "sfb_per_row": False, "a_mn_major": True, "b_mn_major": True, "out_bytes": 2,
               "c_bytes": 0, "public": {"layout": "tn"}},
    **{f"bf16_{layout}": {"op": "bf16", "a_mn_major": a_t, "b_mn_major": b_t, "out_bytes": 2, "c_bytes": 0,
                          "public": {"layout": layout}}
       for layout, (a_t, b_t) in (("nt", (False, False)), ("nn", (False, True)),
                                  ("tn", (True, True)), ("tt", (True, False)))},
}


def _heuristic(kind, m, n, k):
    ext, spec = _runtime.extension(), KINDS[kind]
    if spec["op"] == "fp8":
        return dict(ext.fp8_gemm_config(m, n, k, 1, NUM_SMS, spec["sfb_per_row"], spec["out_bytes"],
                                        spec["c_bytes"], a_mn_major=spec.get("a_mn_major", False),
                                        b_mn_major=spec.get("b_mn_major", False)))
    return dict(ext.bf16_gemm_config(m, n, k, 1, NUM_SMS, spec["a_mn_major"], spec["b_mn_major"],
                                     spec["out_bytes"], spec["c_bytes"]))


def _source(kind, cfg):
    ext = _runtime.extension()
    return (ext.fp8_gemm_source if KINDS[kind]["op"] == "fp8" else ext.bf16_gemm_source)(cfg)


def _code(src):
    """The generated source without its comment lines (which name runtime-only values
    such as the SM count): two configs with the same code are one kernel instance."""
    return "\n".join(ln for ln in src.splitlines() if not ln.lstrip().startswith("//"))


def _bench_configs():
    """{(kind, m, n, k): config} for every benchmark shape and kind."""
    return {(kind, m, n, k): _heuristic(kind, m, n, k)
            for kind in KINDS for n, k in DEEPSEEK_V3_NK for m in BENCH_MS}


def _instances(configs):
    """{key: (kind, config, [shapes])}, one entry per distinct kernel instance; if there
    are more than MAX_INSTANCES, one per distinct (kind, block_m, block_n)."""
    by_code = {}
    for (kind, m, n, k), cfg in configs.items():
        code = _code(_source(kind, cfg))
        entry = by_code.setdefault(code, (kind, cfg, []))  # (fp8_nn without a relayout is fp8_1d2d)
        entry[2].append((m, n, k))
    if len(by_code) > MAX_INSTANCES:
        firsts = {}
        for kind, cfg, shapes in by_code.values():
            firsts.setdefault((kind, cfg["block_m"], cfg["block_n"]), (kind, cfg, shapes))
        chosen = list(firsts.values())
    else:
        chosen = list(by_code.values())
    out = {}
    for kind, cfg, shapes in chosen:
        key = (f"{kind}-m{cfg['block_m']}n{cfg['block_n']}s{cfg['num_stages']}"
               f"w{cfg['store_n']}g{cfg['group_n']}c{cfg['cluster_m']}a{cfg['cluster_n']}k{cfg['k_split']}"
               f"x{cfg['cluster_k']}p{cfg['pingpong']}r{cfg['a_mn_major'] or cfg['b_mn_major']}"
               + ("s" if cfg.get("swap_ab") else "") + ("g" if cfg.get("a_regs") else ""))
        assert key not in out, f"two instances named {key}"
        out[key] = (kind, cfg, shapes)
    return out


BENCH_CONFIGS = _bench_configs()
INSTANCES = _instances(BENCH_CONFIGS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bench_configs_are_valid(kind):
    """Every config the heuristic picks for a benchmark shape is one the kernel can run,
    of the kind asked for, and the public config function agrees with the extension."""
    ext, spec = _runtime.extension(), KINDS[kind]
    for (kind_, m, n, k), cfg in BENCH_CONFIGS.items():
        if kind_ != kind:
            continue
        where = (kind, m, n, k, cfg)
        assert cfg["block_m"] in (64, 128), where
        assert cfg["block_n"] % 16 == 0 and 16 <= cfg["block_n"] <= 256, where
        ck = cfg["cluster_k"]  # each CTA of a K cluster stores block_n / ck columns
        assert cfg["store_n"] in (8, 16, 32, 64) and (cfg["block_n"] // ck) % cfg["store_n"] == 0, where
        assert cfg["store_n"] * spec["out_bytes"] <= 128, where  # one TMA store of <= 128 bytes
        assert cfg["num_stages"] >= 3, where
        assert cfg["group_n"] >= 1, where
        if spec["op"] == "fp8":
            smem = ext.gemm_smem_bytes(cfg, False)  # with a relayout, its raw stages fill the rest
            if not (cfg["a_mn_major"] or cfg["b_mn_major"]):
                assert smem == ext.fp8_gemm_smem_bytes(cfg["block_m"], cfg["block_n"], cfg["num_stages"],
                                                       spec["sfb_per_row"], spec["out_bytes"], cfg["k_split"], ck)
            assert cfg["k_split"] == 1 or (cfg["k_split"] == 2 and cfg["block_m"] == 64), where
        else:
            smem = ext.bf16_gemm_smem_bytes(cfg["block_m"], cfg["block_n"], cfg["num_stages"],
                                            spec["out_bytes"])
            if spec["b_mn_major"]:  # an MN-major B is read (and multicast) in 64-wide swizzles
                assert cfg["block_n"] % (64 * cfg["cluster_m"]) == 0, where
        assert cfg["smem_bytes"] == smem <= SMEM_CAPACITY, where
        cm, cn = cfg["cluster_m"], cfg["cluster_n"]
        assert cm in (1, 2) and cn in (1, 2) and cm * cn <= 2, where
        assert spec["op"] == "fp8" or cn == cfg["k_split"] == ck == 1, where  # FP8 only
        assert ck in (1, 2, 4, 8) and (ck == 1 or (cm * cn == 1 and cfg["block_n"] % (16 * ck) == 0)), where
        assert cfg["num_sms"] % (cm * cn * ck) == 0 and cfg["block_n"] % (8 * cm) == 0, where
        # Ping-pong: BF16 128-row tiles whose accumulators fit in registers (no C, <= 192 columns).
        assert cfg["pingpong"] == 0 or (spec["op"] == "bf16" and cfg["block_m"] == 128 and spec["c_bytes"] == 0
                                        and cfg["block_n"] <= 192), where
        ctas = -(-m // (cfg["block_m"] * cm)) * cm * -(-(-(-n // cfg["block_n"])) // cn) * cn * ck
        assert 1 <= cfg["num_sms"] <= min(NUM_SMS, ctas), where
        # The config carries the kind it was chosen for (the FFI handler reads it).
        # (FP8: an operand stored MN-major is K-major to the kernel unless it relays it out.)
        for key in ("sfb_per_row", "a_mn_major", "b_mn_major"):
            allowed = {0, int(spec.get(key, False))} if spec["op"] == "fp8" and key != "sfb_per_row" else \
                {int(spec.get(key, False))}
            assert cfg[key] in allowed, (where, key)
        assert (cfg["out_bytes"], cfg["c_bytes"]) == (spec["out_bytes"], spec["c_bytes"]), where
        # The public wrapper agrees with the extension.
        public = (jaxgemm.fp8_gemm_config if spec["op"] == "fp8" else jaxgemm.bf16_gemm_config)
        relayout = int(spec["op"] == "fp8" and (cfg["a_mn_major"] or cfg["b_mn_major"]))
        assert public(m, n, k, num_sms=NUM_SMS, **spec["public"]) == dict(cfg, relayout=relayout), where


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_small_m_uses_small_blocks(kind):
    for n, k in DEEPSEEK_V3_NK:
        assert _heuristic(kind, 1, n, k)["block_m"] == 64, (n, k)


def test_instances_cover_every_kind_and_block_shape():
    """The compiled instances cover every (kind, block_m, block_n) the heuristics pick."""
    # (A BF16-output FP8 layout's instance is the same code as the kind that reads what
    # its config hands the kernel: both operands K-major is fp8_1d2d, B read as stored
    # (relaid out or swapped) alone fp8_nn, A alone fp8_tt.)
    def shape(kind, cfg):
        if kind in ("fp8_nn", "fp8_tn", "fp8_tt"):
            kind = {(0, 0): "fp8_1d2d", (0, 1): "fp8_nn", (1, 0): "fp8_tt",
                    (1, 1): "fp8_tn"}[cfg["a_mn_major"], cfg["b_mn_major"]]
        return (kind, cfg["block_m"], cfg["block_n"])
    picked = {shape(kind, cfg) for (kind, *_), cfg in BENCH_CONFIGS.items()}
    compiled = {shape(kind, cfg) for kind, cfg, _ in INSTANCES.values()}
    assert compiled == picked
    assert {kind for kind, _, _ in INSTANCES.values()} == set(KINDS)


@pytest.fixture(scope="module")
def compiled_bench_kernels(tmp_path_factory):
    """Compiles every instance into a fresh cache, in parallel."""
    if _nvcc_path() is None:
        pytest.skip(f"no nvcc under {_runtime.cuda_home()}/bin")
    cache = tmp_path_factory.mktemp("bench-jit")
    ext = _runtime.extension()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JAXGEMM_JIT_CACHE_DIR", str(cache))
        mp.delenv("JAXGEMM_JIT_USE_NVRTC", raising=False)
        _runtime.configure_jit()

        def build(item):
            key, (kind, cfg, _) = item
            src = _source(kind, cfg)
            try:
                return key, (src, ext.compile_kernel(f"sm90_{KINDS[kind]['op']}_gemm", src, "90a"))
            except Exception as e:  # noqa: BLE001 - reported by the test of this instance
                return key, (src, e)

        workers = max(1, min(4, os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = dict(pool.map(build, INSTANCES.items()))
    return results


def _bool(x):
    return "true" if x else "false"


@pytest.mark.parametrize("key", sorted(INSTANCES))
def test_bench_kernel_compiles(compiled_bench_kernels, key):
    kind, cfg, shapes = INSTANCES[key]
    spec = KINDS[kind]
    src, result = compiled_bench_kernels[key]
    if isinstance(result, Exception):
        pytest.fail(f"{kind} config {cfg} (shapes {shapes}) failed to compile:\n{result}")
    path, hit, secs = result
    assert not hit and secs > 0
    cubin = pathlib.Path(path)
    assert cubin.stat().st_size > 0 and cubin.read_bytes()[:4] == b"\x7fELF"
    bm, bn = cfg["block_m"], cfg["block_n"]
    head = f"{bm}, {bn}, {cfg['num_stages']}, {cfg['store_n']}, {cfg['group_n']}"
    if spec["op"] == "fp8":
        assert "#include <sm90/fp8_gemm.cuh>" in src
        assert (f"jaxgemm::sm90::fp8_gemm<Wgmma, {head}, {cfg['cluster_m']}, {cfg['cluster_n']}, "
                f"{cfg['k_split']}, {cfg['cluster_k']}, {_bool(spec['sfb_per_row'])}, {spec['out_bytes']}, {spec['c_bytes']}, ") in src, src
        # The swapped kernel's A operand (the caller's B) comes from registers, as does A
        # stored [K, M] read as stored (a_regs).
        rs = cfg.get("swap_ab") or cfg.get("a_regs")
        assert f"MMA_64x{bn}x32_F32E4M3E4M3_{'RS' if rs else 'SS'}_TN" in src, src
    else:
        majors = ", ".join(f"cute::SM90::GMMA::Major::{'MN' if spec[x] else 'K'}"
                           for x in ("a_mn_major", "b_mn_major"))
        assert "#include <sm90/bf16_gemm.cuh>" in src
        assert (f"jaxgemm::sm90::bf16_gemm<Wgmma, {head}, {cfg['cluster_m']}, {_bool(spec['a_mn_major'])}, "
                f"{_bool(spec['b_mn_major'])}, {spec['out_bytes']}, {spec['c_bytes']}, ") in src, src
        assert f"MMA_64x{bn}x16_F32BF16BF16_SS<{majors}>" in src, src
        assert f", {_bool(cfg['pingpong'])}>(params);" in src, src


def _nvidia_wheel_dirs(folder, package):
    """`folder` ("bin", "lib") of the NVIDIA CUDA wheels installed beside jaxgemm: the
    CUDA 13 wheels share nvidia/cu13/, older ones nvidia/cu12/ or nvidia/<package>/."""
    return [pathlib.Path(base) / "nvidia" / sub / folder
            for base in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
            for sub in ("cu13", "cu12", package)]


def _find_cuobjdump():
    """cuobjdump: $JAXGEMM_CUOBJDUMP, PATH, the CUDA toolkit, the nvidia-cuda-cuobjdump wheel."""
    env = os.environ.get("JAXGEMM_CUOBJDUMP")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("cuobjdump")
    if found:
        return found
    candidates = [d / "cuobjdump" for d in [pathlib.Path(_runtime.cuda_home()) / "bin",
                                            *_nvidia_wheel_dirs("bin", "cuda_cuobjdump")]]
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c)
    return None


@pytest.mark.parametrize("key", sorted(INSTANCES))
def test_bench_kernel_sass(compiled_bench_kernels, key):
    """The instance uses the tensor-core instruction of its kind, at the block's width
    (QGMMA E4M3 for FP8; HGMMA BF16 for BF16, with the transposed-operand flags on
    exactly the MN-major operands) and no local memory (LDL/STL: register spills or
    stack arrays, which cost the kernel dearly)."""
    _, result = compiled_bench_kernels[key]
    if isinstance(result, Exception):
        pytest.skip("did not compile (reported by test_bench_kernel_compiles)")
    sass = _disassemble(result[0])
    kind, cfg, _ = INSTANCES[key]
    spec = KINDS[kind]
    bn = str(cfg["block_n"])
    if spec["op"] == "fp8":
        assert re.search(r"Function : jaxgemm_sm90_fp8_gemm\b", sass)
        qgmma = re.findall(r"QGMMA\.64x(\d+)x32\.F32\.E4M3\.E4M3", sass)
        assert qgmma, "no QGMMA (FP8 WGMMA) in the SASS"
        assert len(qgmma) == len(re.findall(r"\bQGMMA\.", sass)), "QGMMA of another form"
        assert set(qgmma) == {bn}, set(qgmma)
        assert "HGMMA" not in sass
    else:
        assert re.search(r"Function : jaxgemm_sm90_bf16_gemm\b", sass)
        hgmma = re.findall(r"HGMMA\.64x(\d+)x16\.F32\.BF16 [^;]*?gdesc\[\w+\]((?:\.tnsp[AB])*)", sass)
        assert hgmma, "no HGMMA (BF16 WGMMA) in the SASS"
        assert len(hgmma) == len(re.findall(r"\bHGMMA\.", sass)), "HGMMA of another form"
        assert {n for n, _ in hgmma} == {bn}, hgmma[:4]
        flags = ("" + (".tnspA" if spec["a_mn_major"] else "") + (".tnspB" if spec["b_mn_major"] else ""))
        assert {f for _, f in hgmma} == {flags}, (flags, {f for _, f in hgmma})
        assert "QGMMA" not in sass
    _assert_no_local_memory(sass)


def _disassemble(cubin_path) -> str:
    """The SASS of a cubin (skips the test where cuobjdump cannot be run)."""
    tool = _find_cuobjdump()
    if tool is None:
        pytest.skip("no cuobjdump (set JAXGEMM_CUOBJDUMP, put it on PATH, or "
                    "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(tool) + os.pathsep + env.get("PATH", "")  # nvdisasm beside it
    proc = subprocess.run([tool, "-sass", str(cubin_path)], check=False, capture_output=True, text=True,
                          env=env, timeout=300)
    if proc.returncode != 0 and "nvdisasm" in (proc.stderr + proc.stdout):
        pytest.skip(f"{tool} cannot disassemble without nvdisasm: {proc.stderr.strip()[:300]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _assert_no_local_memory(sass):
    local = [ln.strip() for ln in sass.splitlines() if re.search(r"\b(LDL|STL)(\.\w+)*\b", ln)]
    assert not local, f"{len(local)} local-memory instructions, e.g. {local[:3]}"


@needs_nvcc
def test_transpose_bytes_kernel(jit_cache):
    """The FP8 transpose (jaxgemm.ops.transpose) compiles, and its SASS is the copy it
    was written as: per thread 4 16-byte loads and stores to and from global memory,
    16 32-bit shared loads, the 4x4 byte transposes as 32 PRMTs, no local memory."""
    path, hit, _ = _compile("transpose_bytes", _runtime.extension().transpose_bytes_source())
    assert not hit
    sass = _disassemble(path)
    assert re.search(r"Function : jaxgemm_transpose_bytes\b", sass)
    count = lambda pattern: len(re.findall(pattern, sass))  # noqa: E731
    assert count(r"\bLDG\.E(\.\w+)*\.128\b") == 4 and count(r"\bSTS\.128\b") == 4, sass
    assert count(r"\bLDS ") == 16 and count(r"\bSTG\.E\.128\b") == 4, sass
    assert count(r"\bPRMT\b") == 32, sass
    _assert_no_local_memory(sass)


@needs_nvcc
@pytest.mark.parametrize("kind", ["fp8_1d2d", "fp8_nn"])
def test_timeline_build_compiles(jit_cache, monkeypatch, kind):
    """The development timeline (JAXGEMM_EXP_TIMELINE, scripts/cta_timeline.py) still
    builds, for an NT kernel and one with the in-kernel relayout (at M = 128 the heuristic
    relays B out), and prints: the define reaches the kernel."""
    cfg = _heuristic(kind, 128, 7168, 2048)
    assert kind != "fp8_nn" or cfg["b_mn_major"], cfg
    monkeypatch.setenv("JAXGEMM_JIT_DEFINES", "JAXGEMM_EXP_TIMELINE")
    path, hit, _ = _compile("sm90_fp8_gemm", _source(kind, cfg))
    assert not hit
    assert b"vprintf" in pathlib.Path(path).read_bytes(), "the timeline build prints nothing"


# ----------------------------------------------------------------------------- NVRTC

def _nvrtc_dir():
    """The folder holding libnvrtc (what the JIT dlopens with JAXGEMM_JIT_USE_NVRTC=1):
    the CUDA toolkit's, or the nvidia-cuda-nvrtc wheel's; None if neither has it."""
    dirs = [pathlib.Path(_runtime.cuda_home()) / sub for sub in ("lib64", "lib")]
    for d in dirs + _nvidia_wheel_dirs("lib", "cuda_nvrtc"):
        if any((d / name).exists() for name in ("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so")):
            return d
    return None


# Compiles each named source with NVRTC in this child process (LD_LIBRARY_PATH must
# reach libnvrtc before the process starts) and prints {name: cubin path or error}.
_NVRTC_CHILD = """
import json, sys
from jaxgemm import _runtime
_runtime.configure_jit()
ext, out = _runtime.extension(), {}
for name, (kernel, src) in json.load(open(sys.argv[1])).items():
    try:
        out[name] = ext.compile_kernel(kernel, src, "90a")[0]
    except Exception as e:
        out[name] = "ERROR " + str(e)
print(json.dumps(out))
"""


@needs_nvcc
def test_kernels_compile_with_nvrtc(tmp_path):
    """NVRTC (JAXGEMM_JIT_USE_NVRTC=1, the fast cold compile) builds one benchmark
    instance of every kind and the transpose: NVRTC has no C++ standard headers, so a
    kernel header that includes one compiles with NVCC only."""
    lib = _nvrtc_dir()
    if lib is None:
        pytest.skip(f"no libnvrtc under {_runtime.cuda_home()} or an nvidia-cuda-nvrtc wheel")
    firsts = {}
    for key, (kind, cfg, _) in sorted(INSTANCES.items()):
        firsts.setdefault(kind, (f"sm90_{KINDS[kind]['op']}_gemm", _source(kind, cfg)))
    firsts["transpose_bytes"] = ("transpose_bytes", _runtime.extension().transpose_bytes_source())
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps(firsts))
    env = dict(os.environ, JAXGEMM_JIT_USE_NVRTC="1", JAXGEMM_JIT_CACHE_DIR=str(tmp_path / "jit"),
               LD_LIBRARY_PATH=os.pathsep.join(filter(None, [str(lib), os.environ.get("LD_LIBRARY_PATH")])))
    proc = subprocess.run([sys.executable, "-c", _NVRTC_CHILD, str(sources)], capture_output=True, text=True,
                          env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    failed = {name: r for name, r in results.items() if r.startswith("ERROR")}
    assert not failed, "\n".join(f"{name}: {r[:1500]}" for name, r in failed.items())
    for name, path in results.items():
        assert pathlib.Path(path).read_bytes()[:4] == b"\x7fELF", name
