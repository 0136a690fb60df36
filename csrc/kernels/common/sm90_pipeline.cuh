// The TMA -> WGMMA pipeline shared by the SM90 GEMMs: NUM_STAGES shared-memory
// stages guarded by "full" (one producer arrival plus the TMA transaction bytes)
// and "empty" (one arrival per math warp of every CTA whose multicast writes the
// stage) mbarriers. With CLUSTER_M > 1, a CTA's stages are also written by its
// peer, so a stage is free only when the math warps of all CTAs released it.
#pragma once

#include <cute/arch/cluster_sm90.hpp>
#include <cutlass/arch/barrier.h>

#include "sm90_utils.cuh"

namespace jaxgemm::sm90 {

// Thread 0 initialises the barriers; then the CTA (or the whole cluster: the peer
// multicasts into our stages and arrives on our barriers) waits for them.
template <unsigned NUM_STAGES, unsigned CLUSTER_M, unsigned NUM_MATH_WG>
__device__ __forceinline__ void init_pipeline(uint64_t* full, uint64_t* empty) {
  if (threadIdx.x == 0) {
    for (unsigned s = 0; s < NUM_STAGES; ++s) {
      Barrier::init(&full[s], 1);
      Barrier::init(&empty[s], CLUSTER_M * NUM_MATH_WG * 4);
    }
    cutlass::arch::fence_barrier_init();
  }
  if constexpr (CLUSTER_M > 1) cute::cluster_sync();
  else __syncthreads();
}

// A math warp's release of `stage`, to this CTA's producer and its peer's.
template <unsigned CLUSTER_M>
__device__ __forceinline__ void release_stage(uint64_t* empty, unsigned stage, unsigned lane) {
  __syncwarp();
  if (lane == 0) {
    if constexpr (CLUSTER_M == 1) {
      Barrier::arrive(&empty[stage]);
    } else {
#pragma unroll
      for (unsigned r = 0; r < CLUSTER_M; ++r) Barrier::arrive(&empty[stage], r, 1);
    }
  }
}

// The same release, by the barrier's shared-window address (the math loops keep
// their barrier addresses in registers; see keep_in_register). Lane 0 arrives
// through a predicate inside the asm, not a branch: ptxas serializes WGMMAs that are
// in flight across a divergent branch (C7518), and the FP8 kernel releases one
// block's stage while the next block's WGMMAs run.
template <unsigned CLUSTER_M>
__device__ __forceinline__ void release_stage(uint32_t empty_addr, unsigned lane) {
  __syncwarp();
  if constexpr (CLUSTER_M == 1) {
    asm volatile(
        "{\n\t.reg .pred first;\n\t"
        "setp.eq.u32 first, %1, 0;\n\t"
        "@first mbarrier.arrive.shared::cta.b64 _, [%0];\n\t}" ::"r"(empty_addr),
        "r"(lane)
        : "memory");
  } else {
#pragma unroll
    for (unsigned r = 0; r < CLUSTER_M; ++r)
      asm volatile(
          "{\n\t.reg .pred first;\n\t.reg .b32 remote;\n\t"
          "setp.eq.u32 first, %2, 0;\n\t"
          "mapa.shared::cluster.u32 remote, %0, %1;\n\t"
          "@first mbarrier.arrive.shared::cluster.b64 _, [remote];\n\t}" ::"r"(empty_addr),
          "r"(r), "r"(lane)
          : "memory");
  }
}

// Waits for the phase of the barrier at shared-window address `addr` to complete.
__device__ __forceinline__ void wait_barrier(uint32_t addr, uint32_t phase) {
  asm volatile(
      "{\n\t.reg .pred done;\n\t"
      "WAIT:\n\t"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1, %2;\n\t"
      "@!done bra WAIT;\n\t}" ::"r"(addr),
      "r"(phase), "r"(0x989680)
      : "memory");
}

// The producer, after its last load: the peer CTA arrives on our "empty" barriers
// remotely, so stay alive until every stage has been released by both CTAs and no
// arrival targets an exited CTA. `it` is the number of stages filled so far.
template <unsigned NUM_STAGES, unsigned CLUSTER_M>
__device__ __forceinline__ void drain_pipeline(uint64_t* empty, unsigned it) {
  if constexpr (CLUSTER_M > 1) {
    for (unsigned i = 0; i < NUM_STAGES; ++i, ++it)
      Barrier::wait(&empty[it % NUM_STAGES], ((it / NUM_STAGES) & 1) ^ 1);
  }
}

}  // namespace jaxgemm::sm90
