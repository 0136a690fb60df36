// Split-K over the CTAs of a cluster: each of the CLUSTER_K CTAs sums its own range
// of K blocks for the whole tile; the partial sums then meet through distributed
// shared memory as a reduce-scatter. Every CTA publishes its FP32 partial tile in its
// own shared memory, and each sums one column slice of the tile (BLOCK_N / CLUSTER_K
// columns, rank r taking slice r) over all CTAs, for its own epilogue to store.
//
// Why: at small M a GEMM has few output tiles, so each SM works through a long
// serial chain of K blocks while other SMs idle, or narrow tiles re-read all of A
// from L2 once per n-block. Splitting K gives wide tiles enough CTAs. The partials
// never touch global memory and the op stays one launch: no workspace, no counters
// to zero, no second kernel.
//
// Hand-offs, two mbarriers in each CTA, each expecting one arrival per cluster CTA:
//   ready  every CTA has written its partial (release / acquire at cluster scope);
//   done   every CTA has read its slices of this CTA's partial, which may then be
//          overwritten by the next tile's, and the CTA may exit (its shared memory
//          must outlive the peers' reads).
#pragma once

#include "sm90_ptx.cuh"

namespace jaxgemm::sm90 {

// NUM_THREADS math threads each hold NUM_ACC accumulators (the m64nN WGMMA register
// layout); a thread's slice is accumulators [rank * SLICE, (rank + 1) * SLICE), which
// in that layout are the columns [rank, rank + 1) * BLOCK_N / CLUSTER_K of its rows.
template <unsigned CLUSTER_K, unsigned NUM_ACC, unsigned NUM_THREADS>
struct ClusterKReduce {
  static constexpr unsigned SLICE = NUM_ACC / CLUSTER_K;
  static_assert(SLICE % 4 == 0, "each CTA's slice is whole groups of 8 columns");
  // The partial tile: float4 j of thread t at ((j * NUM_THREADS + t) * 16), so that a
  // warp's 16-byte accesses are consecutive.
  static constexpr unsigned SMEM_BYTES = NUM_THREADS * NUM_ACC * 4;

  uint32_t partial;      // shared-window address of the partial tile
  uint32_t ready, done;  // ... and of the two barriers
  unsigned seq = 0;      // tiles reduced so far (the barriers' phase)

  // Thread 0 of the CTA, before the cluster synchronises its barrier initialisation.
  static __device__ __forceinline__ void init_barriers(uint64_t* ready_bar, uint64_t* done_bar) {
    Barrier::init(ready_bar, CLUSTER_K);
    Barrier::init(done_bar, CLUSTER_K);
  }

  // `acc`: this CTA's sums over its K range; `out`: the cluster's sums over all of K
  // for this CTA's column slice. `t` is the thread's index among the NUM_THREADS,
  // `barrier_id` a named barrier for them.
  __device__ __forceinline__ void reduce(const float (&acc)[NUM_ACC], float (&out)[SLICE], unsigned rank,
                                         unsigned t, unsigned barrier_id) {
    if (seq > 0) wait_barrier_acquire_cluster(done, (seq - 1) & 1);  // the previous tile's partial was read
#pragma unroll
    for (unsigned j = 0; j < NUM_ACC / 4; ++j)
      st_shared_f32x4(partial + (j * NUM_THREADS + t) * 16, acc[4 * j], acc[4 * j + 1], acc[4 * j + 2],
                      acc[4 * j + 3]);
    // The barrier orders every thread's writes before thread 0's release.
    named_barrier_sync(NUM_THREADS, barrier_id);
    if (t == 0) {
#pragma unroll
      for (unsigned c = 0; c < CLUSTER_K; ++c) arrive_release_cluster(map_to_cta(ready, c));
    }
    wait_barrier_acquire_cluster(ready, seq & 1);

    // The same summation order (CTA 0 first) for every element: deterministic.
    const uint32_t slice = partial + (rank * (SLICE / 4) * NUM_THREADS + t) * 16;
#pragma unroll
    for (unsigned i = 0; i < SLICE; ++i) out[i] = 0.0f;
#pragma unroll
    for (unsigned c = 0; c < CLUSTER_K; ++c) {
      const uint32_t src = map_to_cta(slice, c);
#pragma unroll
      for (unsigned j = 0; j < SLICE / 4; ++j) {
        const float4 v = ld_shared_cluster_f32x4(src + j * NUM_THREADS * 16);
        out[4 * j] += v.x, out[4 * j + 1] += v.y, out[4 * j + 2] += v.z, out[4 * j + 3] += v.w;
      }
    }
    named_barrier_sync(NUM_THREADS, barrier_id);  // every thread's reads done before the release
    if (t == 0) {
#pragma unroll
      for (unsigned c = 0; c < CLUSTER_K; ++c) arrive_release_cluster(map_to_cta(done, c));
    }
    ++seq;
  }

  // Before the CTA exits: the peers have read the last partial.
  __device__ __forceinline__ void drain() const {
    if (seq > 0) wait_barrier_acquire_cluster(done, (seq - 1) & 1);
  }
};

}  // namespace jaxgemm::sm90
