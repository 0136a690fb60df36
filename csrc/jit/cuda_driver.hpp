// The CUDA driver API, loaded with dlopen on first use.
//
// jaxgemm links no CUDA library at build time, so `import jaxgemm` works on a
// machine with no GPU and no driver. Only cuda.h's types are used here.
#pragma once

#include <cuda.h>
#include <dlfcn.h>

#include <mutex>
#include <stdexcept>
#include <string>

namespace jaxgemm::jit {

class CudaDriver {
 public:
#define JAXGEMM_DRIVER_FN(name) decltype(&::name) name = nullptr
  JAXGEMM_DRIVER_FN(cuInit);
  JAXGEMM_DRIVER_FN(cuGetErrorString);
  JAXGEMM_DRIVER_FN(cuDriverGetVersion);
  JAXGEMM_DRIVER_FN(cuDeviceGet);
  JAXGEMM_DRIVER_FN(cuDeviceGetCount);
  JAXGEMM_DRIVER_FN(cuDeviceGetAttribute);
  JAXGEMM_DRIVER_FN(cuDeviceGetName);
  JAXGEMM_DRIVER_FN(cuCtxGetDevice);
  JAXGEMM_DRIVER_FN(cuCtxGetCurrent);
  JAXGEMM_DRIVER_FN(cuKernelGetFunction);
  JAXGEMM_DRIVER_FN(cuLibraryLoadData);
  JAXGEMM_DRIVER_FN(cuLibraryUnload);
  JAXGEMM_DRIVER_FN(cuLibraryGetKernel);
  JAXGEMM_DRIVER_FN(cuKernelSetAttribute);
  JAXGEMM_DRIVER_FN(cuLaunchKernelEx);
  JAXGEMM_DRIVER_FN(cuTensorMapEncodeTiled);
#undef JAXGEMM_DRIVER_FN

  // The process-wide driver table; throws if libcuda cannot be loaded.
  static const CudaDriver& get() {
    static CudaDriver driver;  // thread-safe static init
    return driver;
  }

  // Throws std::runtime_error naming `what` if `result` is an error.
  void check(CUresult result, const char* what) const {
    if (result == CUDA_SUCCESS) return;
    const char* msg = nullptr;
    if (cuGetErrorString) cuGetErrorString(result, &msg);
    throw std::runtime_error(std::string("jaxgemm: ") + what + " failed: " +
                             (msg ? msg : "unknown CUDA error") + " (" +
                             std::to_string(static_cast<int>(result)) + ")");
  }

 private:
  CudaDriver() {
    handle_ = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!handle_) {
      throw std::runtime_error(
          std::string("jaxgemm: cannot load the CUDA driver (libcuda.so.1): ") +
          dlerror());
    }
    load(cuInit, "cuInit");
    load(cuGetErrorString, "cuGetErrorString");
    load(cuDriverGetVersion, "cuDriverGetVersion");
    load(cuDeviceGet, "cuDeviceGet");
    load(cuDeviceGetCount, "cuDeviceGetCount");
    load(cuDeviceGetAttribute, "cuDeviceGetAttribute");
    load(cuDeviceGetName, "cuDeviceGetName");
    load(cuCtxGetDevice, "cuCtxGetDevice");
    load(cuCtxGetCurrent, "cuCtxGetCurrent");
    load(cuKernelGetFunction, "cuKernelGetFunction");
    load(cuLibraryLoadData, "cuLibraryLoadData");
    load(cuLibraryUnload, "cuLibraryUnload");
    load(cuLibraryGetKernel, "cuLibraryGetKernel");
    load(cuKernelSetAttribute, "cuKernelSetAttribute");
    load(cuLaunchKernelEx, "cuLaunchKernelEx");
    load(cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled");
    check(cuInit(0), "cuInit");
  }

  template <typename Fn>
  void load(Fn& fn, const char* name) {
    fn = reinterpret_cast<Fn>(dlsym(handle_, name));
    if (!fn) {
      throw std::runtime_error(std::string("jaxgemm: the CUDA driver lacks ") +
                               name + "; a driver for CUDA 12.8 or newer is needed");
    }
  }

  void* handle_ = nullptr;
};

}  // namespace jaxgemm::jit
