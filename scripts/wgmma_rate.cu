// Cycles per 128-deep K block of FP8 WGMMAs with both operands in shared memory
// (4 x m64nNk32 per math warpgroup) on all 132 SMs, in the FP8 kernel's pattern: two
// accumulator sets, the last block promoted (FFMA into a third) while the next one
// runs. No loads, unless a producer thread streams a stage's bytes per bulk copy from a
// 1 GiB buffer into shared memory beside them (traffic=1). A development aid: how
// fast the tensor cores take the tiles the M = 128 heuristic picks, without the
// pipeline around them.
//
//   nvcc -std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/kernels \
//     -I$CUTLASS/include --expt-relaxed-constexpr -o /tmp/wgmma_rate scripts/wgmma_rate.cu
//
// Caveat: ptxas reports C7514 for this loop (it serializes the WGMMAs because the
// promotion reads accumulator registers inside the pipeline stage; the kernel's own
// loop compiles without it), so these figures are a lower bound for the kernel's
// WGMMA rate, and they moved by up to 50% between builds of this file.
#include <cstdio>
#include <common/sm90_utils.cuh>
#include <cute/arch/mma_sm90_gmma_ext.hpp>
using namespace jaxgemm::sm90;

template <int N> struct W;
template <> struct W<64> { using T = cute::SM90::GMMA::MMA_64x64x32_F32E4M3E4M3_SS_TN<>; };
template <> struct W<112> { using T = cute::SM90::GMMA::MMA_64x112x32_F32E4M3E4M3_SS_TN<>; };
template <> struct W<128> { using T = cute::SM90::GMMA::MMA_64x128x32_F32E4M3E4M3_SS_TN<>; };

constexpr int STAGES = 4, ITERS = 256;
constexpr uint32_t kChunk = 22528;  // the bytes of a 64x112 stage

template <int N>
__global__ void __launch_bounds__(288, 1)
    bench(int wgs, unsigned long long* cycles, float* sink, const uint8_t* traffic, size_t traffic_bytes) {
  using Wg = typename W<N>::T;
  constexpr int NUM_ACC = N / 2;
  extern __shared__ __align__(1024) uint8_t smem[];
  // Random FP8 operands (exponents below all ones: no NaN).
  for (int i = threadIdx.x; i < STAGES * (128 + N) * 128 / 4; i += blockDim.x) {
    uint32_t h = i * 2654435761u + blockIdx.x * 97u;
    h ^= h >> 13, h *= 0x5bd1e995u, h ^= h >> 15;
    reinterpret_cast<uint32_t*>(smem)[i] = h & 0x77777777u;
  }
  __shared__ uint64_t mbar;
  __shared__ int done_flag;
  const uint32_t mbar_a = smem_addr(&mbar);
  if (threadIdx.x == 0) {
    done_flag = 0;
    Barrier::init(&mbar, 1);
    fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 256) {
    // Inbound traffic as the GEMM's TMA brings it: one stage's bytes in flight at a
    // time from a buffer larger than L2, until the math is done.
    if (traffic == nullptr) return;
    const uint32_t dst = smem_addr(smem) + STAGES * (128 + N) * 128;
    size_t off = size_t(blockIdx.x) * kChunk;
    uint32_t phase = 0;
    while (!*(volatile int*)&done_flag) {
      Barrier::arrive_and_expect_tx(&mbar, kChunk);
      bulk_load(dst, traffic + off, kChunk, mbar_a);
      wait_barrier(mbar_a, phase);
      phase ^= 1;
      off += 132 * size_t(kChunk);
      if (off + kChunk > traffic_bytes) off = size_t(blockIdx.x) * kChunk;
    }
    return;
  }
  const int wg = threadIdx.x / 128;
  if (wg >= wgs) return;
  // Stage s: A (128 rows x 128 B; warpgroup w reads rows 64w..) then B (N rows x 128 B).
  constexpr uint32_t kStage = (128 + N) * 128;
  const uint32_t base = smem_addr(smem);
  const uint32_t da0 = keep_in_register(k_major_sw128_desc_lo(base + wg * 64 * 128));
  const uint32_t db0 = keep_in_register(k_major_sw128_desc_lo(base + 128 * 128));
  float fin[NUM_ACC], a0[NUM_ACC], a1[NUM_ACC];
  for (int i = 0; i < NUM_ACC; ++i) fin[i] = 0.f, a0[i] = 0.f, a1[i] = 0.f;
  auto issue = [&](int it, float(&acc)[NUM_ACC]) {
    const uint32_t off = (it % STAGES) * (kStage / 16);
    fence_accumulators(acc);
    cute::warpgroup_arrive();
#pragma unroll
    for (int k = 0; k < 4; ++k)
      wgmma_fma<Wg>(k_major_sw128_desc(da0 + off + k * 2), k_major_sw128_desc(db0 + off + k * 2), acc, k > 0,
                    typename MakeIndexSequence<NUM_ACC>::type{});
    cute::warpgroup_commit_batch();
  };
  auto promote = [&](float(&acc)[NUM_ACC], float s) {
    fence_accumulators(acc);
#pragma unroll
    for (int i = 0; i < NUM_ACC; ++i) fin[i] += acc[i] * s;
  };
  named_barrier_sync(wgs * 128, 1);
  const unsigned long long t0 = clock64();
  issue(0, a0);
#pragma unroll 1
  for (int it = 1; it + 1 < ITERS; it += 2) {
    issue(it, a1);
    cute::warpgroup_wait<1>();
    promote(a0, 1.0f + it);
    issue(it + 1, a0);
    cute::warpgroup_wait<1>();
    promote(a1, 2.0f + it);
  }
  cute::warpgroup_wait<0>();
  promote(a0, 3.f);
  const unsigned long long t1 = clock64();
  fence_accumulators(fin);
  float s = 0;
  for (int i = 0; i < NUM_ACC; ++i) s += fin[i];
  if (s == 12345.f) sink[threadIdx.x] = s;  // keeps the math live
  if (threadIdx.x % 128 == 0) cycles[blockIdx.x * 2 + wg] = t1 - t0;
  named_barrier_sync(wgs * 128, 1);
  if (threadIdx.x == 0) *(volatile int*)&done_flag = 1;
}

template <int N>
void run(int wgs, const uint8_t* traffic, size_t traffic_bytes) {
  const int smem = STAGES * (128 + N) * 128 + kChunk;
  auto k = bench<N>;
  cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  unsigned long long* cyc;
  float* sink;
  cudaMalloc(&cyc, 132 * 2 * 8);
  cudaMalloc(&sink, 1024 * 4);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int rep = 0; rep < 3; ++rep) k<<<132, 288, smem>>>(wgs, cyc, sink, traffic, traffic_bytes);
  cudaEventRecord(e0);
  k<<<132, 288, smem>>>(wgs, cyc, sink, traffic, traffic_bytes);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  float ms;
  cudaEventElapsedTime(&ms, e0, e1);
  unsigned long long h[264];
  cudaMemcpy(h, cyc, sizeof h, cudaMemcpyDeviceToHost);
  double mean = 0;
  for (int b = 0; b < 132; ++b) mean += h[b * 2];
  mean /= 132;
  const double ideal = 2.0 * N * wgs;  // clks per K block at 4096 FP8 MACs/clk
  printf("N=%3d warpgroups=%d traffic=%d: %5.0f clk per K block (%3.0f%% of the tensor cores), %.2f GHz  %s\n", N, wgs,
         traffic != nullptr, mean / ITERS, 100 * ideal / (mean / ITERS), mean / (ms * 1e-3) / 1e9,
         cudaGetErrorString(cudaGetLastError()));
  cudaFree(cyc);
  cudaFree(sink);
}

int main() {
  uint8_t* traffic;
  const size_t bytes = size_t(1) << 30;
  cudaMalloc(&traffic, bytes);
  cudaMemset(traffic, 0x11, bytes);
  for (int t = 0; t <= 1; ++t)
    for (int wgs = 1; wgs <= 2; ++wgs) {
      run<64>(wgs, t ? traffic : nullptr, bytes);
      run<112>(wgs, t ? traffic : nullptr, bytes);
      run<128>(wgs, t ? traffic : nullptr, bytes);
    }
}
