// Loaded kernels and their launch.
//
// A cubin is loaded once per process with cuLibraryLoadData, which gives a
// context-independent CUkernel usable on every device; the dynamic shared
// memory limit is raised per device at load time, so a launch is only
// cuLaunchKernelEx (safe under CUDA-graph capture).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cache.hpp"
#include "cuda_driver.hpp"
#include "device_runtime.hpp"

namespace jaxgemm::jit {

struct LoadedKernel {
  CUlibrary library = nullptr;
  CUkernel kernel = nullptr;
  int smem_bytes = 0;
};

class KernelRuntime {
 public:
  // Loads (or finds already loaded) `symbol` from the cubin at `path`, and
  // allows `smem_bytes` of dynamic shared memory on every device.
  static const LoadedKernel& load(const std::string& path, const std::string& symbol, int smem_bytes) {
    static std::mutex mutex;
    static std::map<std::string, std::unique_ptr<LoadedKernel>> loaded;
    std::lock_guard<std::mutex> lock(mutex);
    const std::string key = path + "|" + symbol + "|" + std::to_string(smem_bytes);
    auto it = loaded.find(key);
    if (it != loaded.end()) return *it->second;

    const auto& d = CudaDriver::get();
    const std::string image = read_file(path);
    auto k = std::make_unique<LoadedKernel>();
    d.check(d.cuLibraryLoadData(&k->library, image.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
            "cuLibraryLoadData");
    d.check(d.cuLibraryGetKernel(&k->kernel, k->library, symbol.c_str()), "cuLibraryGetKernel");
    k->smem_bytes = smem_bytes;
    const int n = DeviceRuntime::device_count();
    for (int ordinal = 0; ordinal < n; ++ordinal) {
      CUdevice dev;
      d.check(d.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
      d.check(d.cuKernelSetAttribute(CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_bytes,
                                     k->kernel, dev),
              "cuKernelSetAttribute(max dynamic shared memory)");
    }
    return *loaded.emplace(key, std::move(k)).first->second;
  }

  // Loads the kernel into the current context now, if there is one, so that the
  // first launch (possibly under graph capture) loads nothing.
  static void preload_in_current_context(const LoadedKernel& k) {
    const auto& d = CudaDriver::get();
    CUcontext ctx = nullptr;
    if (d.cuCtxGetCurrent(&ctx) != CUDA_SUCCESS || ctx == nullptr) return;
    CUfunction fn;
    d.check(d.cuKernelGetFunction(&fn, k.kernel), "cuKernelGetFunction");
  }
};

struct LaunchShape {
  unsigned grid = 1;
  unsigned block = 128;
  unsigned cluster = 1;
};

// Launches `kernel` with one by-value argument struct. Returns the driver's
// result instead of throwing: this runs inside XLA's execute stage.
template <typename Params>
CUresult launch(const LoadedKernel& k, const LaunchShape& shape, CUstream stream, const Params& params) {
  const auto& d = CudaDriver::get();
  CUlaunchConfig config = {};
  config.gridDimX = shape.grid;
  config.gridDimY = 1;
  config.gridDimZ = 1;
  config.blockDimX = shape.block;
  config.blockDimY = 1;
  config.blockDimZ = 1;
  config.sharedMemBytes = static_cast<unsigned>(k.smem_bytes);
  config.hStream = stream;
  CUlaunchAttribute attr;
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = shape.cluster;
  attr.value.clusterDim.y = 1;
  attr.value.clusterDim.z = 1;
  config.attrs = &attr;
  config.numAttrs = shape.cluster > 1 ? 1 : 0;
  void* args[] = {const_cast<Params*>(&params)};
  return d.cuLaunchKernelEx(&config, reinterpret_cast<CUfunction>(k.kernel), args, nullptr);
}

}  // namespace jaxgemm::jit
