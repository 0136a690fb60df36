// L2 -> SM bandwidth as TMA sees it (a development aid, no JAX): every CTA (one per
// SM, or on half the SMs) streams 16 KiB bulk copies from a buffer into a ring of 8
// shared-memory stages; with a small buffer the bytes come from L2, with 1 GiB from
// DRAM. "multicast pairs": clusters of 2 CTAs, each copying half of every chunk into
// both CTAs' stage, so L2 reads half of what shared memory receives. Prints TB/s
// delivered into shared memory and read from L2.
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/kernels \
//     -o /tmp/l2_bandwidth scripts/l2_bandwidth.cu
//
// The question it answers: whether an M = 128 GEMM whose every n-block re-reads A from
// L2 is bound by L2's bandwidth (BENCHMARKS.md, session 19).
#include <cstdio>
#include <cstdint>
#include <cuda_runtime.h>
#include <common/sm90_ptx.cuh>
using namespace jaxgemm::sm90;

constexpr int STAGES = 8;

// One thread per CTA keeps STAGES bulk copies of CHUNK bytes in flight. MULTICAST
// (clusters of 2): each CTA copies its half of every chunk into both CTAs' stage.
template <int CHUNK, bool MULTICAST>
__global__ void __launch_bounds__(128, 1) stream(const uint8_t* buf, size_t buf_bytes, int iters, unsigned long long* out) {
  extern __shared__ __align__(1024) uint8_t smem[];
  __shared__ uint64_t bar[STAGES];
  const uint32_t rank = MULTICAST ? block_rank_in_cluster() : 0;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) Barrier::init(&bar[s], 1);
    fence_barrier_init();
  }
  if constexpr (MULTICAST) cluster_sync(); else __syncthreads();
  if (threadIdx.x == 0) {
    constexpr uint32_t kPart = MULTICAST ? CHUNK / 2 : CHUNK;  // this CTA's copy of a chunk
    const size_t nchunks = buf_bytes / CHUNK;
    size_t c = (size_t(blockIdx.x / (MULTICAST ? 2 : 1)) * 7919) % nchunks;
    for (int i = 0; i < iters + STAGES; ++i) {
      const int s = i % STAGES;
      if (i >= STAGES) Barrier::wait(&bar[s], ((i / STAGES) - 1) & 1);  // the copy issued STAGES ago
      if (i < iters) {
        Barrier::arrive_and_expect_tx(&bar[s], CHUNK);
        const uint32_t dst = smem_addr(smem + s * CHUNK + rank * kPart);
        const uint8_t* src = buf + c * CHUNK + rank * kPart;
        if constexpr (MULTICAST)
          asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster"
                       " [%0], [%1], %2, [%3], %4;" ::"r"(dst), "l"(src), "r"(kPart), "r"(smem_addr(&bar[s])),
                       "h"(uint16_t(3)) : "memory");
        else
          bulk_load(dst, src, kPart, smem_addr(&bar[s]));
        c = (c + 1) % nchunks;
      }
    }
  }
  // The peer's copies land in this CTA's stages: stay until both are done.
  if constexpr (MULTICAST) cluster_sync();
  if (blockIdx.x == 0 && threadIdx.x == 0) atomicAdd(out, 1ull);
}
int main() {
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  uint8_t* buf; cudaMalloc(&buf, size_t(1) << 30); cudaMemset(buf, 1, size_t(1) << 30);
  unsigned long long* out; cudaMalloc(&out, 8);
  constexpr int CHUNK = 16384;
  cudaFuncSetAttribute(stream<CHUNK, false>, cudaFuncAttributeMaxDynamicSharedMemorySize, STAGES * CHUNK);
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  cudaFuncSetAttribute(stream<CHUNK, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, STAGES * CHUNK);
  for (size_t mb : {2, 8, 32, 1024}) {
    for (int mode = 0; mode < 3; ++mode) {
      int grid = mode == 1 ? sms / 2 : sms;
      int iters = 2000;
      auto launch = [&]() {
        if (mode < 2) { stream<CHUNK, false><<<grid, 128, STAGES * CHUNK>>>(buf, mb << 20, iters, out); return; }
        cudaLaunchConfig_t cfg = {}; cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeClusterDimension; at[0].val.clusterDim.x = 2; at[0].val.clusterDim.y = 1; at[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(grid); cfg.blockDim = dim3(128); cfg.dynamicSmemBytes = STAGES * CHUNK; cfg.attrs = at; cfg.numAttrs = 1;
        cudaLaunchKernelEx(&cfg, stream<CHUNK, true>, (const uint8_t*)buf, mb << 20, iters, out);
      };
      launch();
      cudaEventRecord(a);
      for (int r = 0; r < 5; ++r) launch();
      cudaEventRecord(b); cudaEventSynchronize(b);
      float ms; cudaEventElapsedTime(&ms, a, b);
      double bytes = 5.0 * grid * iters * CHUNK;  // delivered into shared memory
      printf("buffer %5zu MB, %3d CTAs%s: delivered %.2f TB/s (%.1f B/clk/SM at 1.755 GHz), read from L2 %.2f TB/s\n", mb, grid,
             mode == 2 ? " multicast pairs" : "", bytes / ms / 1e9, bytes / (ms * 1e-3) / grid / 1.755e9,
             (mode == 2 ? 0.5 : 1.0) * bytes / ms / 1e9);
    }
  }
  printf("%s\n", cudaGetErrorString(cudaGetLastError()));
}
