// Small SM90 building blocks shared by the GEMM kernels: WGMMA shared-memory
// descriptors, WGMMA issue, shared-memory loads, BF16 packing.
#pragma once

#include <cute/arch/mma_sm90_gmma.hpp>

#include "sm90_ptx.cuh"

namespace jaxgemm::sm90 {

// setmaxnreg budget of the 384-thread (two math warpgroups) GEMM kernels: ptxas gives
// each thread 65536 / 384 rounded down to 8 = 168 registers at entry, and the
// rebalanced counts must add up to exactly that (an increase beyond what the
// producer freed blocks forever).
constexpr unsigned kProducerRegs = 56, kMathRegs = 224;
// The FP8 kernel with a relayout: its producer warps transpose in registers.
constexpr unsigned kRelayoutProducerRegs = 72, kRelayoutMathRegs = 216;

static_assert(kProducerRegs * 128 + kMathRegs * 256 == 168 * 384, "setmaxnreg budget must balance");
static_assert(kRelayoutProducerRegs * 128 + kRelayoutMathRegs * 256 == 168 * 384, "setmaxnreg budget must balance");

// Hides how `v` was computed from ptxas, so that it stays in a register. Shared
// addresses derived from the window base would otherwise be rebuilt (S2UR and a
// chain of uniform ops) wherever they are used, for instance in every K block.
__device__ __forceinline__ uint32_t keep_in_register(uint32_t v) {
  asm volatile("" : "+r"(v));
  return v;
}

// Shared-memory loads by shared-window address (LDS, not a generic load). Volatile:
// they must stay after the barrier wait that publishes the data.
__device__ __forceinline__ float ld_shared_f32(uint32_t addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr));
  return v;
}

__device__ __forceinline__ float2 ld_shared_f32x2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];" : "=f"(v.x), "=f"(v.y) : "r"(addr));
  return v;
}

__device__ __forceinline__ float4 ld_shared_f32x4(uint32_t addr) {
  float4 v;
  asm volatile("ld.shared.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w) : "r"(addr));
  return v;
}

__device__ __forceinline__ uint32_t ld_shared_u32(uint32_t addr) {
  uint32_t v;
  asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
  return v;
}

__device__ __forceinline__ void st_shared_u32x4(uint32_t addr, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(a), "r"(b), "r"(c), "r"(d) : "memory");
}

// WGMMA shared-memory descriptor of a 128B-swizzled tile (1024-aligned), in
// the canonical layouts of the PTX ISA, offsets in bytes:
//   K-major:  rows of 128 bytes of K; 8-row groups `sbo` apart (1024 when dense).
//   MN-major: rows of 128 bytes of M (or N) per k; 8-row groups of k `sbo`
//             apart, 128-byte-wide MN chunks `lbo` apart.
__device__ __forceinline__ uint64_t smem_desc_sw128(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  uint64_t desc = 0;
  desc |= static_cast<uint64_t>((addr >> 4) & 0x3FFF);            // start address
  desc |= static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16;        // leading byte offset
  desc |= static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32;        // stride byte offset
  desc |= static_cast<uint64_t>(1) << 62;                          // 128B swizzle
  return desc;
}

__device__ __forceinline__ uint64_t smem_desc_sw128(const void* ptr, uint32_t lbo, uint32_t sbo) {
  return smem_desc_sw128(smem_addr(ptr), lbo, sbo);
}

__device__ __forceinline__ uint64_t smem_desc_k_major_sw128(uint32_t addr) {
  return smem_desc_sw128(addr, 16, 1024);  // the leading offset is unused for K-major
}

__device__ __forceinline__ uint64_t smem_desc_k_major_sw128(const void* ptr) {
  return smem_desc_k_major_sw128(smem_addr(ptr));
}

// The same K-major descriptor split in two: its high word is a constant (stride
// 1024, 128B swizzle), so address arithmetic on a stage or a K step only touches
// the low word (start address in 16 bytes, unused leading offset 1).
__device__ __forceinline__ uint32_t k_major_sw128_desc_lo(uint32_t addr) {
  return static_cast<uint32_t>(smem_desc_k_major_sw128(addr));
}

__device__ __forceinline__ uint64_t k_major_sw128_desc(uint32_t lo) {
  constexpr uint64_t kHi = (static_cast<uint64_t>(1024 >> 4) << 32) | (static_cast<uint64_t>(1) << 62);
  return kHi | lo;
}

// 0, 1, ..., N-1 as a type (libcu++'s <utility> is the slow include this avoids).
template <int... I>
struct IndexSequence {};

template <int N, int... I>
struct MakeIndexSequence : MakeIndexSequence<N - 1, N - 1, I...> {};

template <int... I>
struct MakeIndexSequence<0, I...> {
  using type = IndexSequence<I...>;
};

// One WGMMA whose NUM_ACC accumulator registers are acc[0..NUM_ACC-1].
template <class Wgmma, int... I>
__device__ __forceinline__ void wgmma_fma(uint64_t desc_a, uint64_t desc_b, float* acc, bool accumulate,
                                          IndexSequence<I...>) {
  Wgmma::fma(desc_a, desc_b, acc[I]...,
             accumulate ? cute::SM90::GMMA::ScaleOut::One : cute::SM90::GMMA::ScaleOut::Zero);
}

template <unsigned NUM_ACC>
__device__ __forceinline__ void fence_accumulators(float (&acc)[NUM_ACC]) {
#pragma unroll
  for (unsigned i = 0; i < NUM_ACC; ++i) cute::warpgroup_fence_operand(acc[i]);
}

// Bytes of {b, a} picked by the selector's four nibbles (PRMT).
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t selector) {
  uint32_t v;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(v) : "r"(a), "r"(b), "r"(selector));
  return v;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

}  // namespace jaxgemm::sm90
