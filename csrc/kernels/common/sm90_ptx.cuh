// The SM90 synchronisation and data-movement instructions the GEMM kernels use,
// as thin PTX wrappers: mbarriers, TMA loads (multicast too) and stores, the
// cluster, named barriers and proxy fences.
//
// Why not CuTe's copy_sm90_tma.hpp, cluster_sm90.hpp and CUTLASS's barrier.h:
// each of them pulls in libcu++'s <cuda/std/type_traits> (0.43 s of NVRTC alone on
// the development machine), and parsing those headers was most of a kernel's cold
// compile: without them the 128x160 FP8 kernel's NVRTC compile fell from 1.0 to 0.5 s
// there, and from 2.7-3.2 s to 1.1 s on the H100 machine's host. The WGMMA atoms
// still come from CuTe (mma_sm90_gmma.hpp does not pull it in). Instruction forms: PTX ISA, "Parallel Synchronization and
// Communication Instructions: mbarrier" and "Data Movement: cp.async.bulk.tensor".
#pragma once

#include <cuda/std/cstdint>

#include "tma_descriptor.h"

namespace jaxgemm::sm90 {

using uint8_t = ::cuda::std::uint8_t;
using uint16_t = ::cuda::std::uint16_t;
using uint32_t = ::cuda::std::uint32_t;
using uint64_t = ::cuda::std::uint64_t;

__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// ------------------------------------------------------------------ mbarriers

// Waits for the phase of the mbarrier at shared-window address `addr` to complete.
__device__ __forceinline__ void wait_barrier(uint32_t addr, uint32_t phase) {
  asm volatile(
      "{\n\t.reg .pred done;\n\t"
      "WAIT:\n\t"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1, %2;\n\t"
      "@!done bra WAIT;\n\t}" ::"r"(addr),
      "r"(phase), "r"(0x989680)
      : "memory");
}

// An mbarrier in shared memory: a pipeline stage's "full" (one arrival that also
// announces the bytes TMA will deliver) or "empty" (one arrival per consumer warp).
struct Barrier {
  static __device__ __forceinline__ void init(uint64_t* bar, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(smem_addr(bar)), "r"(arrivals));
  }
  static __device__ __forceinline__ void wait(uint64_t* bar, uint32_t phase) { wait_barrier(smem_addr(bar), phase); }
  static __device__ __forceinline__ void arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(smem_addr(bar)) : "memory");
  }
  static __device__ __forceinline__ void arrive_and_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(bar)), "r"(bytes)
                 : "memory");
  }
};

// Makes the barriers' initialisation visible to the cluster (and to TMA).
__device__ __forceinline__ void fence_barrier_init() { asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory"); }

// Lane 0's arrival on the mbarrier at `addr` in the shared memory of cluster CTA
// `cta` (this CTA's own included). The lane test is a predicate inside the asm, not
// a branch: ptxas serializes WGMMAs that are in flight across a divergent branch
// (warning C7518), and the FP8 kernel arrives while the next block's WGMMAs run.
__device__ __forceinline__ void arrive_remote_lane0(uint32_t addr, uint32_t cta, uint32_t lane) {
  asm volatile(
      "{\n\t.reg .pred first;\n\t.reg .b32 remote;\n\t"
      "setp.eq.u32 first, %2, 0;\n\t"
      "mapa.shared::cluster.u32 remote, %0, %1;\n\t"
      "@first mbarrier.arrive.shared::cluster.b64 _, [remote];\n\t}" ::"r"(addr),
      "r"(cta), "r"(lane)
      : "memory");
}

// The same, on this CTA's own barrier.
__device__ __forceinline__ void arrive_lane0(uint32_t addr, uint32_t lane) {
  asm volatile(
      "{\n\t.reg .pred first;\n\t"
      "setp.eq.u32 first, %1, 0;\n\t"
      "@first mbarrier.arrive.shared::cta.b64 _, [%0];\n\t}" ::"r"(addr),
      "r"(lane)
      : "memory");
}

// ------------------------------------------------------------------------ TMA

__device__ __forceinline__ void prefetch_tma(const TmaDescriptor* desc) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<unsigned long long>(desc)) : "memory");
}

// The GPU's nanosecond clock, common to all SMs (for development timelines).
__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// The box of `desc` at (c0, c1, c2) into `smem`; completes `bar`'s transaction bytes.
__device__ __forceinline__ void tma_load_3d(const TmaDescriptor* desc, uint64_t* bar, void* smem, int c0, int c1,
                                            int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];" ::
          "r"(smem_addr(smem)),
      "l"(reinterpret_cast<unsigned long long>(desc)), "r"(smem_addr(bar)), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// The same box into `smem` (and the barrier at the same offset) of every CTA of the
// cluster in `cta_mask`.
__device__ __forceinline__ void tma_load_3d_multicast(const TmaDescriptor* desc, uint64_t* bar, uint16_t cta_mask,
                                                      void* smem, int c0, int c1, int c2) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%4, %5, %6}], [%2], %3;" ::"r"(smem_addr(smem)),
      "l"(reinterpret_cast<unsigned long long>(desc)), "r"(smem_addr(bar)), "h"(cta_mask), "r"(c0), "r"(c1), "r"(c2)
      : "memory");
}

// `bytes` (a multiple of 16) from `src` into shared memory at `dst`, without a tensor
// map; completes the transaction bytes of the barrier at `bar`. The GEMMs load tiles
// with tma_load_3d; development aids (scripts/*.cu) stream raw bytes with this.
__device__ __forceinline__ void bulk_load(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// `smem` to the box of `desc` at (c0, c1, c2); rows and columns outside the tensor are dropped.
__device__ __forceinline__ void tma_store_3d(const TmaDescriptor* desc, const void* smem, int c0, int c1, int c2) {
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];" ::"l"(
                   reinterpret_cast<unsigned long long>(desc)),
               "r"(smem_addr(smem)), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
}

// Closes the group of stores issued so far by this thread.
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }

// Waits until at most N of this thread's store groups have yet to read their shared memory.
template <int N>
__device__ __forceinline__ void tma_store_wait() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}

// 4 bytes from `src` to shared `dst` by the asynchronous copy unit; with `valid`
// false, zeros and no read.
__device__ __forceinline__ void cp_async_4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(dst), "l"(src), "r"(valid ? 4 : 0) : "memory");
}

// One arrival on the barrier at `bar` once this thread's cp.async copies so far have
// landed (the barrier's expected count includes it: .noinc).
__device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
}

// Orders this thread's shared-memory writes before later TMA (async proxy) reads of them.
__device__ __forceinline__ void fence_view_async_shared() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }

// ------------------------------------------------------- cluster and barriers

__device__ __forceinline__ uint32_t block_rank_in_cluster() {
  uint32_t rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(rank));
  return rank;
}

// Every thread of every CTA in the cluster.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.aligned;\n\tbarrier.cluster.wait.aligned;" ::: "memory");
}

// The shared-window address `addr` of this CTA, as the same offset in cluster CTA
// `cta`'s shared memory (this CTA's own included).
__device__ __forceinline__ uint32_t map_to_cta(uint32_t addr, uint32_t cta) {
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(cta));
  return remote;
}

// An arrival on a cluster CTA's mbarrier (`remote` from map_to_cta).
__device__ __forceinline__ void arrive_remote(uint32_t remote) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(remote) : "memory");
}

// One arrival on this CTA's mbarrier at `addr` that also expects `bytes` more of
// asynchronous writes (TMA, st.async) in the current phase.
__device__ __forceinline__ void arrive_expect_tx(uint32_t addr, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(addr), "r"(bytes) : "memory");
}

// 16 bytes into a cluster CTA's shared memory at `remote`, counted as transaction
// bytes on its mbarrier at `remote_bar` (both from map_to_cta): once that barrier's
// phase completes, the receiver sees the data with no further fence.
__device__ __forceinline__ void st_async_f32x4(uint32_t remote, float x, float y, float z, float w,
                                               uint32_t remote_bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(
                   remote),
               "f"(x), "f"(y), "f"(z), "f"(w), "r"(remote_bar)
               : "memory");
}

// `num_threads` threads (whole warps) meet at named barrier `id` (1..15; 0 is __syncthreads).
__device__ __forceinline__ void named_barrier_sync(uint32_t num_threads, uint32_t id) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(num_threads) : "memory");
}

// Arrives at named barrier `id` without waiting: the other warps of the
// `num_threads` bar.sync there.
__device__ __forceinline__ void named_barrier_arrive(uint32_t num_threads, uint32_t id) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(num_threads) : "memory");
}

}  // namespace jaxgemm::sm90
