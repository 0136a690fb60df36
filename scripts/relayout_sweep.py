"""FP8 nn with the in-kernel relayout (relayout=1) over pinned tile shapes, beside NT and
the heuristic's pick, at one M over the DeepSeek-V3 shapes (a development aid for the
relayout heuristic; the benchmark's timing method).

    python scripts/relayout_sweep.py [M]          (default 128)
    python scripts/relayout_sweep.py M stages[=2,3]   the heuristic's tiles, pipeline stages 3..7
        (or those given; the raw stages take the rest of shared memory)
    python scripts/relayout_sweep.py M '[{"layout": "nt", "block_n": 64}, {...}]' [NxK,...]
        these configs (layout nn unless given, with relayout=1 unless given; "relayout":
        null for the heuristic's own choice), on these shapes
"""
import json
import sys

import jax

import jaxgemm
from jaxgemm import bench

CANDIDATES = [None, {"block_m": 128, "block_n": 64}, {"block_m": 128, "block_n": 64, "cluster_k": 2},
              {"block_m": 128, "block_n": 64, "cluster_k": 4}, {"block_m": 128, "block_n": 32},
              {"block_m": 128, "block_n": 32, "cluster_k": 2}, {"block_m": 64, "block_n": 48}]
# At M <= 64 one 64-row tile covers M.
CANDIDATES_64 = [None, {"block_m": 64, "block_n": 64}, {"block_m": 64, "block_n": 64, "cluster_k": 2},
                 {"block_m": 64, "block_n": 64, "k_split": 2}, {"block_m": 64, "block_n": 32, "k_split": 2},
                 {"block_m": 64, "block_n": 32, "cluster_k": 2}, {"block_m": 64, "block_n": 112}]


def main():
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    stages_mode = len(sys.argv) > 2 and sys.argv[2].startswith("stages")
    stage_counts = [int(x) for x in sys.argv[2].split("=")[1].split(",")] if stages_mode and "=" in sys.argv[2] \
        else [3, 4, 5, 6, 7]
    given = json.loads(sys.argv[2]) if len(sys.argv) > 2 and not stages_mode else None
    shapes = [tuple(map(int, s.split("x"))) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 \
        else bench.DEEPSEEK_V3_NK
    key = jax.random.PRNGKey(0)
    for n, k in shapes:
        a, b = bench._sweep_operands(m, n, k, key)
        sets = len(a)
        flops = 2.0 * m * n * k * sets
        a_km, b_kn = [bench._swap(p) for p in a], [bench._swap(p) for p in b]
        row = []
        nt = jax.jit(lambda a, b: [jaxgemm.fp8_gemm_nt(x, y) for x, y in zip(a, b)])
        t, _ = bench._time_fn(nt, (a, b))
        row.append(f"nt {flops / t / 1e12:.0f}")
        if stages_mode:
            heur = jaxgemm.fp8_gemm_config(m, n, k, layout="nn")
            pinned = {key: heur[key] for key in ("block_m", "block_n", "cluster_k", "k_split")}
            cands = [dict(pinned, num_stages=s) for s in stage_counts]
        elif given is not None:
            cands = given
        else:
            cands = CANDIDATES_64 if m <= 64 else CANDIDATES
        for cand in cands:
            cand = dict(cand or {})
            layout = cand.pop("layout", "nn")
            cfg = {"relayout": 1, **cand} if layout != "nt" else cand  # relayout unless told
            cfg = {key: v for key, v in cfg.items() if v is not None} or None  # null: the heuristic's
            op = getattr(jaxgemm, f"fp8_gemm_{layout}")
            try:
                f = jax.jit(lambda a, b, cfg=cfg, op=op: [op(x, y, config=cfg) for x, y in zip(a, b)])
                t, _ = bench._time_fn(f, (a_km if layout[0] == "t" else a, b_kn if layout[1] == "n" else b))
                v = f"{flops / t / 1e12:.0f}"
            except Exception as e:  # noqa: BLE001 - a config the kernel rejects
                v = f"error ({str(e).splitlines()[0][:60]})"
            name = layout + " " + (",".join(f"{k}={v}" for k, v in (cfg or {}).items()) or "heuristic")
            row.append(f"{name} {v}")
        del a, b, a_km, b_kn
        print(f"M={m} N={n} K={k}: " + " ".join(row), flush=True)


if __name__ == "__main__":
    main()
