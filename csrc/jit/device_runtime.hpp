// Properties of each GPU, kept per device ordinal: one JAX process drives
// several GPUs, which need not be alike.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include "cuda_driver.hpp"

namespace jaxgemm::jit {

struct DeviceInfo {
  int ordinal = 0;
  int arch_major = 0;
  int arch_minor = 0;
  int num_sms = 0;
  int max_smem_per_block = 0;  // the opt-in limit for dynamic shared memory
  std::string name;

  // "90a" or "100a": the arch-specific target our kernels are built for.
  std::string arch_suffix() const {
    return std::to_string(arch_major * 10 + arch_minor) + "a";
  }
};

class DeviceRuntime {
 public:
  static const DeviceInfo& info(int ordinal) {
    static std::mutex mutex;
    static std::map<int, DeviceInfo> infos;
    std::lock_guard<std::mutex> lock(mutex);
    auto it = infos.find(ordinal);
    if (it != infos.end()) return it->second;

    const auto& d = CudaDriver::get();
    CUdevice dev;
    d.check(d.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
    DeviceInfo info;
    info.ordinal = ordinal;
    auto attr = [&](CUdevice_attribute a) {
      int v = 0;
      d.check(d.cuDeviceGetAttribute(&v, a, dev), "cuDeviceGetAttribute");
      return v;
    };
    info.arch_major = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
    info.arch_minor = attr(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
    info.num_sms = attr(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
    info.max_smem_per_block =
        attr(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
    char name[256] = {0};
    d.check(d.cuDeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
    info.name = name;
    return infos.emplace(ordinal, info).first->second;
  }

  static int device_count() {
    const auto& d = CudaDriver::get();
    int n = 0;
    d.check(d.cuDeviceGetCount(&n), "cuDeviceGetCount");
    return n;
  }
};

}  // namespace jaxgemm::jit
