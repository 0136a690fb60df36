// Persistent-grid tile order shared by the SM90 GEMMs.
#pragma once

namespace jaxgemm::sm90 {

// Maps a linear tile index to (batch, m block, n block). A tile here is a unit of
// CLUSTER_M x CLUSTER_N blocks, one per CTA of the cluster (rank `rank` takes
// m-block unit * CLUSTER_M + rank, or n-block unit * CLUSTER_N + rank); a block
// past M or N is a dummy whose loads read zeros and whose stores are dropped.
// Units run in bands of GROUP_N n-blocks, m fastest within a band, so the CTAs
// in flight share a few B panels and a few A panels in L2.
template <unsigned GROUP_N, unsigned CLUSTER_M, unsigned CLUSTER_N = 1>
struct TileScheduler {
  static_assert(CLUSTER_M == 1 || CLUSTER_N == 1, "a cluster pairs blocks along M or along N");
  static constexpr unsigned kGroupUnits = GROUP_N / CLUSTER_N > 0 ? GROUP_N / CLUSTER_N : 1;
  unsigned num_m_units, num_n_units, tiles_per_batch, num_tiles;

  __device__ TileScheduler(unsigned m, unsigned n, unsigned batches, unsigned block_m, unsigned block_n)
      : num_m_units((m + block_m * CLUSTER_M - 1) / (block_m * CLUSTER_M)),
        num_n_units(((n + block_n - 1) / block_n + CLUSTER_N - 1) / CLUSTER_N) {
    tiles_per_batch = num_m_units * num_n_units;
    num_tiles = tiles_per_batch * batches;
  }

  __device__ __forceinline__ void get(unsigned tile, unsigned rank, unsigned& l, unsigned& m_block,
                                      unsigned& n_block) const {
    l = tile / tiles_per_batch;
    const unsigned r = tile - l * tiles_per_batch;
    const unsigned band = r / (kGroupUnits * num_m_units);
    const unsigned first_n = band * kGroupUnits;
    const unsigned width = min(kGroupUnits, num_n_units - first_n);
    const unsigned idx = r - band * kGroupUnits * num_m_units;
    m_block = (idx / width) * CLUSTER_M + (CLUSTER_M > 1 ? rank : 0);
    n_block = (first_n + idx % width) * CLUSTER_N + (CLUSTER_N > 1 ? rank : 0);
  }
};

}  // namespace jaxgemm::sm90
