// How many thread-block clusters of 1 to 16 CTAs the GPU holds at once when each CTA
// takes a whole SM (as jaxgemm's GEMMs do): cudaOccupancyMaxActiveClusters for a
// kernel with 200 KB of shared memory. A development aid for the heuristics' grids:
// a cluster never spans two GPCs, so where a GPC's SM count is not a multiple of the
// cluster size, fewer CTAs than SMs run at once (an H100 SXM: 132 in pairs, 120 in
// clusters of 4 or 8).
//
//   nvcc -std=c++17 -O2 -gencode=arch=compute_90a,code=sm_90a -o /tmp/cluster_occupancy \
//     scripts/cluster_occupancy.cu
#include <cstdio>
#include <cuda_runtime.h>

__global__ void whole_sm_kernel() {
  extern __shared__ char smem[];
  if (threadIdx.x == 1000) smem[0] = 0;  // never true: the kernel only has to exist
}

int main() {
  constexpr int kSmem = 200 * 1024;
  cudaFuncSetAttribute(whole_sm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  cudaFuncSetAttribute(whole_sm_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  printf("%d SMs\n", sms);
  for (int size : {1, 2, 4, 8, 16}) {
    cudaLaunchAttribute cluster;
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = size, cluster.val.clusterDim.y = 1, cluster.val.clusterDim.z = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(size * 16), config.blockDim = dim3(384), config.dynamicSmemBytes = kSmem;
    config.attrs = &cluster, config.numAttrs = 1;
    int clusters = 0;
    const cudaError_t err = cudaOccupancyMaxActiveClusters(&clusters, whole_sm_kernel, &config);
    if (err != cudaSuccess) {
      printf("clusters of %2d: %s\n", size, cudaGetErrorString(err));
      continue;
    }
    printf("clusters of %2d: %3d at once, %3d CTAs\n", size, clusters, clusters * size);
  }
}
