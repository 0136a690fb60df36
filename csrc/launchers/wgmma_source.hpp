// Pieces of generated kernel sources shared by the SM90 GEMM launchers.
#pragma once

#include <string>

namespace jaxgemm::launchers {

// CuTe declares WGMMA atoms of these N in mma_sm90_gmma.hpp; the others live in
// the (much larger) _ext header, included only when needed.
inline std::string wgmma_ext_include(int n) {
  for (int b : {8, 16, 32, 64, 96, 128, 192, 256})
    if (n == b) return "";
  return "#include <cute/arch/mma_sm90_gmma_ext.hpp>\n";
}

inline std::string bool_str(bool b) { return b ? "true" : "false"; }

}  // namespace jaxgemm::launchers
