// Split-K over the CTAs of a cluster: each of the CLUSTER_K (2, 4 or 8) CTAs sums its own range
// of K blocks for the whole tile; the partial sums then meet through distributed
// shared memory as a reduce-scatter. CTA r owns column slice r of the tile
// (BLOCK_N / CLUSTER_K columns): every other CTA pushes its partial of that slice
// into r's shared memory with st.async, and r adds them to its own and stores.
//
// Why: at small M a GEMM has few output tiles, so each SM works through a long
// serial chain of K blocks while other SMs idle, or narrow tiles re-read all of A
// from L2 once per n-block. Splitting K gives wide tiles enough CTAs. The partials
// never touch global memory and the op stays one launch: no workspace, no counters
// to zero, no second kernel.
//
// Why a push: st.async counts its bytes on the receiver's mbarrier, so the receiver
// sees the data when the phase completes, with no fence. A first version had every
// CTA publish its partial, hand over with release/acquire at cluster scope and pull
// the slices with ld.shared::cluster: correct, but on an H100 (kernel time alone,
// M=128, 32768x512 at 128x64 over 4 CTAs, 16 tiles per cluster) 30 TFLOPS against
// 68 with the push.
//
// What it is worth (H100, M = 128, BENCHMARKS.md, session 6): little. Only a long
// K with very few tiles gained (2112x7168: 64x32 on two warpgroups 317 TFLOPS, 64x64
// on two warpgroups and 2 CTAs 361). Clusters of 4 and 8 were slower than unsplit
// tiles on every other shape, and most of that remained with the reduction compiled
// out: the split K loops themselves ran slowly there, for reasons not found.
//
// Two mbarriers in each CTA:
//   received  one arrival (the owner's, announcing the bytes of the other CTAs'
//             slices) plus those bytes: the slices of this tile are in.
//   free      one arrival from each other CTA once it has read what this CTA sent
//             it: the next tile's slices may be sent, or the CTA may exit (a
//             peer's arrival must not target an exited CTA).
#pragma once

#include "sm90_ptx.cuh"
#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

// NUM_THREADS math threads each hold NUM_ACC accumulators (the m64nN WGMMA register
// layout); slice r is accumulators [r * SLICE, (r + 1) * SLICE), which in that layout
// are the columns [r, r + 1) * BLOCK_N / CLUSTER_K of the thread's rows.
template <unsigned CLUSTER_K, unsigned NUM_ACC, unsigned NUM_THREADS>
struct ClusterKReduce {
  static constexpr unsigned SLICE = NUM_ACC / CLUSTER_K;
  static_assert(SLICE % 4 == 0, "each CTA's slice is whole groups of 8 columns");
  static constexpr unsigned SLOT_BYTES = NUM_THREADS * SLICE * 4;  // one sender's slice
  // The receive buffer: a slot per other CTA; in a slot, float4 j of thread t at
  // ((j * NUM_THREADS + t) * 16), so that a warp's 16-byte accesses are consecutive.
  static constexpr unsigned SMEM_BYTES = (CLUSTER_K - 1) * SLOT_BYTES;

  uint32_t recv;             // shared-window address of the receive buffer
  uint32_t received, free_;  // ... and of the two barriers
  unsigned seq = 0;          // tiles reduced so far (the barriers' phase)

  // Thread 0 of the CTA, before the cluster synchronises its barrier initialisation.
  static __device__ __forceinline__ void init_barriers(uint64_t* received_bar, uint64_t* free_bar) {
    Barrier::init(received_bar, 1);
    Barrier::init(free_bar, CLUSTER_K - 1);
  }

  // `acc`: this CTA's sums over its K range; `out`: the cluster's sums over all of K
  // for this CTA's column slice. `t` is the thread's index among the NUM_THREADS,
  // `barrier_id` a named barrier for them.
  __device__ __forceinline__ void reduce(const float (&acc)[NUM_ACC], float (&out)[SLICE], unsigned me, unsigned t,
                                         unsigned barrier_id) {
    if (seq > 0) wait_barrier(free_, (seq - 1) & 1);  // the peers have read the previous tile's slices
#pragma unroll
    for (unsigned r = 0; r < CLUSTER_K; ++r) {
      if (r == me) continue;
      // This CTA's slot at r: the senders in rank order, r itself left out.
      const uint32_t dst = map_to_cta(recv + (me - (me > r)) * SLOT_BYTES + t * 16, r);
      const uint32_t bar = map_to_cta(received, r);
#pragma unroll
      for (unsigned j = 0; j < SLICE / 4; ++j) {
        const unsigned i = r * SLICE + 4 * j;
        st_async_f32x4(dst + j * NUM_THREADS * 16, acc[i], acc[i + 1], acc[i + 2], acc[i + 3], bar);
      }
    }
    if (t == 0) arrive_expect_tx(received, (CLUSTER_K - 1) * SLOT_BYTES);
    // Meanwhile, this CTA's own part of its slice (a select per register: `me` is
    // not a compile-time index).
#pragma unroll
    for (unsigned r = 0; r < CLUSTER_K; ++r) {
#pragma unroll
      for (unsigned i = 0; i < SLICE; ++i) out[i] = r == me ? acc[r * SLICE + i] : (r == 0 ? 0.0f : out[i]);
    }
    wait_barrier(received, seq & 1);
    // Its own part first, then the others' in rank order: the same order in every run.
#pragma unroll
    for (unsigned s = 0; s < CLUSTER_K - 1; ++s) {
#pragma unroll
      for (unsigned j = 0; j < SLICE / 4; ++j) {
        const float4 v = ld_shared_f32x4(recv + s * SLOT_BYTES + (j * NUM_THREADS + t) * 16);
        out[4 * j] += v.x, out[4 * j + 1] += v.y, out[4 * j + 2] += v.z, out[4 * j + 3] += v.w;
      }
    }
    named_barrier_sync(NUM_THREADS, barrier_id);  // every thread has read its slots
    if (t == 0) {
#pragma unroll
      for (unsigned c = 0; c < CLUSTER_K; ++c)
        if (c != me) arrive_remote(map_to_cta(free_, c));
    }
    ++seq;
  }

  // Before the CTA exits: the peers have read this CTA's last slices (and arrived).
  __device__ __forceinline__ void drain() const {
    if (seq > 0) wait_barrier(free_, (seq - 1) & 1);
  }
};

}  // namespace jaxgemm::sm90
