// The on-disk kernel cache: content-addressed, published atomically.
//
// An entry is the folder <cache_dir>/cache/<name>.<key>/ holding kernel.cubin.
// A compile writes into a private temp folder and renames it into place, so a
// reader sees either no entry or a complete one, even with several processes
// compiling the same kernel at once.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace jaxgemm::jit {

namespace fs = std::filesystem;

// 128-bit content hash (two FNV-1a 64 lanes with different seeds). It names a
// cache entry; it is not a security boundary.
class Hasher {
 public:
  Hasher& add(const std::string& s) {
    for (unsigned char c : s) {
      a_ = (a_ ^ c) * 0x100000001b3ULL;
      b_ = (b_ ^ c) * 0x100000001b3ULL;
    }
    // A separator, so that ("ab","c") and ("a","bc") differ.
    a_ = (a_ ^ 0xff) * 0x100000001b3ULL;
    b_ = (b_ ^ 0xfe) * 0x100000001b3ULL;
    return *this;
  }
  std::string hex() const {
    char buf[33];
    std::snprintf(buf, sizeof(buf), "%016llx%016llx",
                  static_cast<unsigned long long>(a_),
                  static_cast<unsigned long long>(b_));
    return buf;
  }

 private:
  uint64_t a_ = 0xcbf29ce484222325ULL;
  uint64_t b_ = 0x84222325cbf29ce4ULL;
};

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  if (!out) throw std::runtime_error("jaxgemm: cannot write " + path.string());
}

// Hash of every header under `root`, so that editing a kernel template
// invalidates the kernels built from it.
inline std::string hash_tree(const std::string& root) {
  std::vector<fs::path> files;
  if (fs::exists(root)) {
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (e.is_regular_file()) files.push_back(e.path());
    }
  }
  std::sort(files.begin(), files.end());
  Hasher h;
  for (const auto& f : files) h.add(f.lexically_relative(root).string()).add(read_file(f));
  return h.hex();
}

class KernelCache {
 public:
  explicit KernelCache(std::string dir) : dir_(std::move(dir)) {}

  fs::path entry(const std::string& name, const std::string& key) const {
    return fs::path(dir_) / "cache" / (name + "." + key);
  }

  // The cubin path if the entry exists, else "".
  std::string lookup(const std::string& name, const std::string& key) const {
    fs::path cubin = entry(name, key) / "kernel.cubin";
    return fs::exists(cubin) ? cubin.string() : std::string();
  }

  // A fresh private folder to compile into.
  fs::path make_temp(const std::string& name) const {
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    fs::path tmp = fs::path(dir_) / "tmp" /
                   (name + "." + std::to_string(getpid()) + "." + std::to_string(rng()));
    fs::create_directories(tmp);
    return tmp;
  }

  // Moves `tmp` into place as the entry; if another process won the race,
  // keeps theirs. Returns the cubin path.
  std::string publish(const fs::path& tmp, const std::string& name, const std::string& key) const {
    fs::path dst = entry(name, key);
    fs::create_directories(dst.parent_path());
    std::error_code ec;
    fs::rename(tmp, dst, ec);
    if (ec) fs::remove_all(tmp, ec);  // an entry already exists: use it
    std::string cubin = (dst / "kernel.cubin").string();
    if (!fs::exists(cubin)) throw std::runtime_error("jaxgemm: cache entry missing " + cubin);
    return cubin;
  }

 private:
  std::string dir_;
};

}  // namespace jaxgemm::jit
