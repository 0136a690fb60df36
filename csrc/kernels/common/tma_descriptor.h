// A TMA descriptor as the kernels see it: 128 opaque bytes, 64-byte aligned,
// the layout of the driver's CUtensorMap. Kernels use this instead of cuda.h,
// so that they also compile under NVRTC.
#pragma once

namespace jaxgemm {

struct alignas(64) TmaDescriptor {
  unsigned long long opaque[16];
};

}  // namespace jaxgemm
