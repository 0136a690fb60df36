// The TMA -> WGMMA pipeline shared by the SM90 GEMMs: NUM_STAGES shared-memory
// stages guarded by "full" (one producer arrival plus the TMA transaction bytes)
// and "empty" (one arrival per math warp of every CTA whose multicast writes the
// stage) mbarriers. With CLUSTER > 1, a CTA's stages are also written by its
// peer, so a stage is free only when the math warps of all CTAs released it.
#pragma once

#include "sm90_ptx.cuh"

namespace jaxgemm::sm90 {

// A math warp releases a stage with __syncwarp (which orders its lanes' reads of the
// stage, such as A's scales) and one arrival by lane 0. compute-sanitizer's racecheck
// does not follow that order from lanes 1-31 through lane 0's arrival and reports a WAR
// hazard wherever a stage is reused (tiles in turn); built with
// -DJAXGEMM_RACECHECK_ALL_LANES_ARRIVE every lane arrives instead, and racecheck then
// reports none (scripts/sanitize_fp8_gemm.py; BENCHMARKS.md, session 16).
#ifdef JAXGEMM_RACECHECK_ALL_LANES_ARRIVE
constexpr unsigned kEmptyArrivalsPerWarp = 32;
#else
constexpr unsigned kEmptyArrivalsPerWarp = 1;
#endif

// Thread 0 initialises the barriers; then the CTA (or the whole cluster: the peer
// multicasts into our stages and arrives on our barriers) waits for them. "full"
// counts the TMA thread's arrival plus EXTRA_FILLERS (threads that fill part of a
// stage by other means).
template <unsigned NUM_STAGES, unsigned CLUSTER, unsigned NUM_MATH_WG, unsigned EXTRA_FILLERS = 0>
__device__ __forceinline__ void init_pipeline(uint64_t* full, uint64_t* empty) {
  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < NUM_STAGES; ++s) {
      Barrier::init(&full[s], 1 + EXTRA_FILLERS);
      Barrier::init(&empty[s], CLUSTER * NUM_MATH_WG * 4 * kEmptyArrivalsPerWarp);
    }
    fence_barrier_init();
  }
  if constexpr (CLUSTER > 1) cluster_sync();
  else __syncthreads();
}

// A math warp's release of the stage whose "empty" barrier is at shared-window
// address `empty_addr`, to this CTA's producer and (CLUSTER > 1) its peer's. The
// math loops keep their barrier addresses in registers; see keep_in_register.
template <unsigned CLUSTER>
__device__ __forceinline__ void release_stage(uint32_t empty_addr, unsigned lane) {
  __syncwarp();
  if constexpr (kEmptyArrivalsPerWarp == 32) lane = 0;  // every lane arrives
  if constexpr (CLUSTER == 1) {
    arrive_lane0(empty_addr, lane);
  } else {
#pragma unroll
    for (unsigned r = 0; r < CLUSTER; ++r) arrive_remote_lane0(empty_addr, r, lane);
  }
}

template <unsigned CLUSTER>
__device__ __forceinline__ void release_stage(uint64_t* empty, unsigned stage, unsigned lane) {
  release_stage<CLUSTER>(smem_addr(&empty[stage]), lane);
}

// The producer, after its last load: the peer CTA arrives on our "empty" barriers
// remotely, so stay alive until every stage has been released by both CTAs and no
// arrival targets an exited CTA. `it` is the number of stages filled so far.
template <unsigned NUM_STAGES, unsigned CLUSTER>
__device__ __forceinline__ void drain_pipeline(uint64_t* empty, unsigned it) {
  if constexpr (CLUSTER > 1) {
    for (unsigned i = 0; i < NUM_STAGES; ++i, ++it)
      Barrier::wait(&empty[it % NUM_STAGES], ((it / NUM_STAGES) & 1) ^ 1);
  }
}

}  // namespace jaxgemm::sm90
