"""When each CTA of an FP8 GEMM starts, gets its first stage, ends its main loop and
exits, and when its first tile's K blocks land (every 8th CTA; with a relayout, when
each stage was free, its raw MN-major block landed and its transpose was done), and
when the first math thread found each stage full, had issued its WGMMAs, found them
done (with two accumulator sets: after issuing the next block's) and had promoted them;
also the SM clock over the main loops (a development aid: a build with
JAXGEMM_EXP_TIMELINE prints %globaltimer and clock64 there).

    python scripts/cta_timeline.py M N K [layout] [config-json]     (layout nt by default)

Runs the benchmark's back-to-back GEMMs over distinct input sets in a child process
built with the define, then summarises the last call's launches: offsets in us from the
launch's first CTA entry, as median / max over its CTAs.
"""
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys
import jax
import jaxgemm
from jaxgemm import bench
m, n, k = map(int, sys.argv[1:4])
layout = sys.argv[4] if len(sys.argv) > 4 else "nt"
config = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
a, b = bench._sweep_operands(m, n, k, jax.random.PRNGKey(0))
sets = len(a)
a_t, b_t = bench.reference.LAYOUTS[layout]
a = [bench._swap(x) for x in a] if a_t else a
b = [bench._swap(x) for x in b] if b_t else b
op = bench._FP8_OPS[layout]
f = jax.jit(lambda a, b: [op(x, y, config=config) for x, y in zip(a, b)])
for _ in range(3):
    jax.block_until_ready(f(a, b))
print("SETS", sets, layout, jaxgemm.fp8_gemm_config(m, n, k, layout=layout, config=config), flush=True)
"""


def main(argv):
    # Any experiment defines of the caller's, plus the timeline's.
    env = dict(os.environ, JAXGEMM_JIT_DEFINES=(os.environ.get("JAXGEMM_JIT_DEFINES", "") + " JAXGEMM_EXP_TIMELINE").strip())
    out = subprocess.run([sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    lines = out.stdout.splitlines()
    sets_line = next(x for x in lines if x.startswith("SETS"))
    sets = int(sets_line.split()[1])
    print(sets_line)
    rows = [list(map(int, x.split()[1:])) for x in lines if x.startswith("TL ")]
    # The launches, in order: a new one starts where an entry jumps past the last exit.
    launches, cur = [], []
    for r in rows:
        if cur and r[2] > max(x[5] for x in cur):
            launches.append(cur)
            cur = []
        cur.append(r)
    launches.append(cur)
    print(f"{len(launches)} launches, {len(rows)} CTA lines; the last call's {sets}:")
    # SM clock over the main loop: its clock64 cycles over its %globaltimer ns.
    ghz = [r[6] / (r[4] - r[3]) for r in launches[-1] if r[4] > r[3]]
    print(f"  SM clock over the last launch's main loops: {statistics.median(ghz):.2f} GHz (median of CTAs)")
    print("  ctas | entry spread | first stage | loop end       | exit           | span us")
    for launch in launches[-sets:]:
        t0 = min(r[2] for r in launch)
        us = lambda i: [(r[i] - t0) / 1e3 for r in launch]  # noqa: E731
        entry, first, loop, exit_ = us(2), us(3), us(4), us(5)
        med = statistics.median
        print(f"  {len(launch):4d} | {max(entry):5.2f}        | {med(first):4.2f} / {max(first):4.2f} "
              f"| {med(loop):5.2f} / {max(loop):5.2f} | {med(exit_):5.2f} / {max(exit_):5.2f} | {max(exit_):.2f}")
    last = launches[-1]
    t0 = min(r[2] for r in last)
    # Per K block of the first tile (every 8th CTA), the last launch's: "TS block kb ns"
    # when the stage landed (an idle warp watching, no relayout); with a relayout
    # "TR block kb free raw done" from relayout warp 0 (its stage was free, its raw block
    # had landed, its transpose was done) and "TM block kb full issued done promoted" from
    # the first math thread.
    t_end = max(r[5] for r in last)
    series = {}
    for tag, names in (("TS", ["landed"]), ("TR", ["stage free", "raw landed", "transposed"]),
                       ("TM", ["math found full", "issued", "wgmma done", "promoted"])):
        for x in lines:
            if x.startswith(tag + " "):
                _, kb, *times = map(int, x.split()[1:])
                if t0 <= times[0] <= t_end:
                    for name, ns in zip(names, times):
                        series.setdefault(name, {}).setdefault(kb, []).append((ns - t0) / 1e3)
    if series:
        print("  last launch, per K block of the first tile (us, median / max over CTAs):")
    for name, times in series.items():
        print(f"    {name:>15}: " + "  ".join(f"{i}:{statistics.median(v):.2f}/{max(v):.2f}"
                                          for i, v in sorted(times.items())))
    by_exit = sorted(last, key=lambda r: r[5])
    print("  last launch, CTAs by exit (block sm first_us loop_us exit_us):")
    for r in by_exit[:3] + by_exit[-5:]:
        print(f"    {r[0]:4d} {r[1]:4d} {(r[3] - t0) / 1e3:6.2f} {(r[4] - t0) / 1e3:6.2f} {(r[5] - t0) / 1e3:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
