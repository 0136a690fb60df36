// HBM bandwidth of byte-matrix transposes, [R, C] -> [C, R], in variants of the
// layout of jaxgemm's transpose_bytes (a development aid, no JAX): how many 128x128
// tiles one CTA moves (TR along R, TC along C, all loaded before any is stored) and
// whether the stores are streaming (st.global.cs). Against two copies of the same
// bytes: one with the transpose's CTA layout (the ceiling of that layout) and one
// grid-stride copy. Prints read + written TB/s, over distinct buffers that together
// are several times L2, timed with CUDA events (median of 5 runs of 20 launches).
//
//   nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -Icsrc/kernels \
//     -o /tmp/transpose_variants scripts/transpose_variants.cu
//
// The question it answers: how far the transpose that tn, nn and tt pay for at
// M = 4096 is from what HBM gives (BENCHMARKS.md, session 21).
#include <algorithm>
#include <cstdio>
#include <vector>
#include <cuda_runtime.h>
#include <common/transpose_bytes.cuh>
using jaxgemm::kTransposeTile;
using jaxgemm::transpose_4x4_bytes;
using jaxgemm::transpose_swizzle;

struct Args {
  const unsigned char* in;
  unsigned char* out;
  unsigned rows, cols, groups_c;  // groups_c: CTAs along C
};

constexpr int kThreads = 256, kChunks = kTransposeTile * kTransposeTile / 16 / kThreads;  // 4

// Calls f(t, i, offset) for chunk i of tile t of the CTA's TR x TC tiles, where the
// 16-byte chunk at `offset` of the [R, C] input lies inside it.
template <int TR, int TC, class F>
__device__ __forceinline__ void for_each_chunk(const Args& p, unsigned g_r, unsigned g_c, F f) {
#pragma unroll
  for (int t = 0; t < TR * TC; ++t) {
    const unsigned r0 = (g_r * TR + t / TC) * kTransposeTile, c0 = (g_c * TC + t % TC) * kTransposeTile;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const unsigned idx = threadIdx.x + i * kThreads, row = idx / 8, col = (idx % 8) * 16;
      if (r0 + row < p.rows && c0 + col < p.cols) f(t, i, size_t(r0 + row) * p.cols + c0 + col);
    }
  }
}

template <bool CS>
__device__ __forceinline__ void store16(unsigned char* dst, uint4 v) {
  if constexpr (CS) __stcs(reinterpret_cast<uint4*>(dst), v); else *reinterpret_cast<uint4*>(dst) = v;
}

// The transpose, as transpose_bytes does it, tile after tile.
template <int TR, int TC, bool CS>
__device__ __forceinline__ void store_transposed(const Args& p, unsigned g_r, unsigned g_c, const uint4 (&v)[TR * TC][kChunks]) {
  extern __shared__ __align__(16) unsigned smem[];
  using Tile = unsigned[kTransposeTile][kTransposeTile / 4];
  Tile* tiles = reinterpret_cast<Tile*>(smem);
#pragma unroll
  for (int t = 0; t < TR * TC; ++t)
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const unsigned idx = threadIdx.x + i * kThreads, row = idx / 8, word = (idx % 8) * 4;
      *reinterpret_cast<uint4*>(&tiles[t][row][word ^ transpose_swizzle(row)]) = v[t][i];
    }
  __syncthreads();
  const unsigned lane = threadIdx.x % 32, group = lane % 8, word = (threadIdx.x / 32) * 4 + lane / 8;
  const unsigned row = group * 16, col = word * 4;
#pragma unroll
  for (int t = 0; t < TR * TC; ++t) {
    const unsigned r0 = (g_r * TR + t / TC) * kTransposeTile, c0 = (g_c * TC + t % TC) * kTransposeTile;
    if (r0 + row >= p.rows || c0 + col >= p.cols) continue;
    unsigned x[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) x[i] = tiles[t][row + i][word ^ transpose_swizzle(row)];
#pragma unroll
    for (int q = 0; q < 4; ++q) transpose_4x4_bytes(x[4 * q], x[4 * q + 1], x[4 * q + 2], x[4 * q + 3]);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      store16<CS>(p.out + size_t(c0 + col + j) * p.rows + r0 + row, make_uint4(x[j], x[4 + j], x[8 + j], x[12 + j]));
  }
}

// A CTA moves TR x TC tiles. COPY: stores them back in place instead of transposed.
template <int TR, int TC, bool CS, bool COPY>
__global__ void __launch_bounds__(kThreads) variant(Args p) {
  const unsigned g_r = blockIdx.x / p.groups_c, g_c = blockIdx.x % p.groups_c;
  uint4 v[TR * TC][kChunks];  // every tile's loads are issued before any tile is stored
  for_each_chunk<TR, TC>(p, g_r, g_c, [&](int t, int i, size_t off) {
    v[t][i] = __ldcs(reinterpret_cast<const uint4*>(p.in + off));
  });
  if constexpr (COPY)  // the loaded pieces stored back in place: the ceiling of this layout
    for_each_chunk<TR, TC>(p, g_r, g_c, [&](int t, int i, size_t off) { store16<CS>(p.out + off, v[t][i]); });
  else
    store_transposed<TR, TC, CS>(p, g_r, g_c, v);
}

// A plain copy: every thread moves 16-byte pieces, grid-stride, 4 in flight.
__global__ void __launch_bounds__(kThreads) grid_copy(const uint4* in, uint4* out, size_t n) {
  const size_t stride = size_t(gridDim.x) * kThreads;
  for (size_t i = size_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j * stride < n) v[j] = __ldcs(in + i + j * stride);
#pragma unroll
    for (int j = 0; j < 4; ++j)
      if (i + j * stride < n) out[i + j * stride] = v[j];
  }
}

struct Shape { unsigned r, c; };

// One launch of a variant on [R, C] at `in`, into `out`.
template <int TR, int TC, bool CS, bool COPY>
void launch(const unsigned char* in, unsigned char* out, Shape s) {
  const unsigned groups_r = (s.r + TR * kTransposeTile - 1) / (TR * kTransposeTile);
  const unsigned groups_c = (s.c + TC * kTransposeTile - 1) / (TC * kTransposeTile);
  const int smem = COPY ? 0 : TR * TC * kTransposeTile * kTransposeTile;
  cudaFuncSetAttribute(variant<TR, TC, CS, COPY>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  variant<TR, TC, CS, COPY><<<groups_r * groups_c, kThreads, smem>>>(Args{in, out, s.r, s.c, groups_c});
}

// Whether a variant transposes (or copies) a [R, C] matrix of distinct-ish bytes exactly.
template <int TR, int TC, bool CS, bool COPY>
bool check(Shape s) {
  const size_t bytes = size_t(s.r) * s.c;
  std::vector<unsigned char> h(bytes), o(bytes);
  for (size_t i = 0; i < bytes; ++i) h[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
  unsigned char *in, *out;
  cudaMalloc(&in, bytes); cudaMalloc(&out, bytes);
  cudaMemcpy(in, h.data(), bytes, cudaMemcpyHostToDevice);
  cudaMemset(out, 0xAB, bytes);
  launch<TR, TC, CS, COPY>(in, out, s);
  cudaMemcpy(o.data(), out, bytes, cudaMemcpyDeviceToHost);
  cudaFree(in); cudaFree(out);
  for (size_t r = 0; r < s.r; ++r)
    for (size_t c = 0; c < s.c; ++c)
      if (o[COPY ? r * s.c + c : c * s.r + r] != h[r * s.c + c]) return false;
  return true;
}

// Read + written TB/s of `run(in, out)` over the buffers in turn: the median of 5 runs of
// 20 calls, after one run of warm-up.
template <class Run>
float bandwidth(const std::vector<unsigned char*>& ins, const std::vector<unsigned char*>& outs, Shape s, Run run) {
  cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
  std::vector<float> ms;
  for (int rep = 0; rep < 6; ++rep) {
    cudaEventRecord(a);
    for (int it = 0; it < 20; ++it) run(ins[it % ins.size()], outs[it % ins.size()]);
    cudaEventRecord(b); cudaEventSynchronize(b);
    float t; cudaEventElapsedTime(&t, a, b);
    if (rep > 0) ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  return 2.0 * s.r * s.c * 20 / (ms[ms.size() / 2] * 1e-3) / 1e12;
}

template <int TR, int TC, bool CS, bool COPY>
float run_variant(const std::vector<unsigned char*>& ins, const std::vector<unsigned char*>& outs, Shape s) {
  return bandwidth(ins, outs, s, [&](const unsigned char* in, unsigned char* out) { launch<TR, TC, CS, COPY>(in, out, s); });
}

float run_grid_copy(const std::vector<unsigned char*>& ins, const std::vector<unsigned char*>& outs, Shape s) {
  int sms; cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  const size_t n = size_t(s.r) * s.c / 16;
  return bandwidth(ins, outs, s, [&](const unsigned char* in, unsigned char* out) {
    grid_copy<<<sms * 8, kThreads>>>(reinterpret_cast<const uint4*>(in), reinterpret_cast<uint4*>(out), n);
  });
}

int main() {
  // The operands tn / nn / tt transpose at the DeepSeek-V3 shapes: B [K, N] and A [K, 4096].
  const Shape shapes[] = {{512, 32768}, {1536, 24576}, {2048, 7168}, {7168, 2112}, {7168, 4096},
                          {16384, 7168}, {1536, 4096}, {16384, 4096}};
  const Shape odd{7168, 2112};  // 2112 columns: a partial tile
  const bool ok = check<1, 1, false, false>(odd) && check<1, 1, true, false>(odd) && check<1, 2, false, false>(odd) &&
                  check<2, 1, false, false>(odd) && check<2, 2, false, false>(odd) && check<1, 4, false, false>(odd) &&
                  check<1, 1, false, true>(odd) && check<1, 2, false, true>(odd);
  printf("every variant exact on [7168, 2112]: %s\n", ok ? "yes" : "NO");
  printf("%14s %6s | %6s %6s %6s %6s %6s %6s | %6s %6s %6s\n", "[R, C]", "MB", "1x1", "1x1cs", "1x2", "2x1",
         "2x2", "1x4", "copy1", "copy2", "grid");
  for (const Shape s : shapes) {
    const size_t bytes = size_t(s.r) * s.c;
    const size_t sets = std::max<size_t>(2, (size_t(400) << 20) / bytes);
    std::vector<unsigned char*> ins(sets), outs(sets);
    for (size_t i = 0; i < sets; ++i) {
      cudaMalloc(&ins[i], bytes); cudaMalloc(&outs[i], bytes);
      cudaMemset(ins[i], int(i + 1), bytes);
    }
    const float r[] = {run_variant<1, 1, false, false>(ins, outs, s), run_variant<1, 1, true, false>(ins, outs, s),
                       run_variant<1, 2, false, false>(ins, outs, s), run_variant<2, 1, false, false>(ins, outs, s),
                       run_variant<2, 2, false, false>(ins, outs, s), run_variant<1, 4, false, false>(ins, outs, s),
                       run_variant<1, 1, false, true>(ins, outs, s),  run_variant<1, 2, false, true>(ins, outs, s),
                       run_grid_copy(ins, outs, s)};
    printf("[%5u, %5u] %6.1f |", s.r, s.c, bytes / 1e6);
    for (int i = 0; i < 9; ++i) printf(" %6.2f%s", r[i], i == 5 ? " |" : "");
    printf("\n");
    for (size_t i = 0; i < sets; ++i) { cudaFree(ins[i]); cudaFree(outs[i]); }
  }
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) { printf("CUDA error: %s\n", cudaGetErrorString(e)); return 1; }
  return ok ? 0 : 1;
}
