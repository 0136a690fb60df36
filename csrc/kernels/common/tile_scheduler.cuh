// Persistent-grid tile order shared by the SM90 GEMMs.
#pragma once

namespace jaxgemm::sm90 {

// Maps a linear tile index to (batch, m block, n block). A tile here is
// CLUSTER_M m-blocks wide (one per CTA of the cluster; an m-block past M is a
// dummy whose loads read zeros and whose stores are dropped). Tiles run in
// bands of GROUP_N n-blocks, m fastest within a band, so the CTAs in flight
// share a few B panels and a few A panels in L2.
template <unsigned GROUP_N, unsigned CLUSTER_M>
struct TileScheduler {
  unsigned num_m_units, num_n_blocks, tiles_per_batch, num_tiles;

  __device__ TileScheduler(unsigned m, unsigned n, unsigned batches, unsigned block_m, unsigned block_n)
      : num_m_units((m + block_m * CLUSTER_M - 1) / (block_m * CLUSTER_M)),
        num_n_blocks((n + block_n - 1) / block_n) {
    tiles_per_batch = num_m_units * num_n_blocks;
    num_tiles = tiles_per_batch * batches;
  }

  __device__ __forceinline__ void get(unsigned tile, unsigned rank, unsigned& l, unsigned& m_block,
                                      unsigned& n_block) const {
    l = tile / tiles_per_batch;
    const unsigned r = tile - l * tiles_per_batch;
    const unsigned band = r / (GROUP_N * num_m_units);
    const unsigned first_n = band * GROUP_N;
    const unsigned width = min(GROUP_N, num_n_blocks - first_n);
    const unsigned idx = r - band * GROUP_N * num_m_units;
    m_block = (idx / width) * CLUSTER_M + rank;
    n_block = first_n + idx % width;
  }
};

}  // namespace jaxgemm::sm90
