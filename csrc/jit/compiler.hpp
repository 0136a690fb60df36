// Compiles a generated kernel source to a cubin, through the on-disk cache.
//
// NVCC by default (a subprocess); NVRTC (dlopen'ed) with JAXGEMM_JIT_USE_NVRTC=1.
// The cache key covers the source, the kernel headers, the flags, the compiler
// version, the arch and the library version.
#pragma once

#include <dlfcn.h>

#include <sys/wait.h>

#include <array>
#include <map>
#include <mutex>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache.hpp"
#include "settings.hpp"

namespace jaxgemm::jit {

// The head of a long compiler log: the first errors are the ones that matter.
inline std::string head(const std::string& log, size_t limit = 8000) {
  return log.size() <= limit ? log : log.substr(0, limit) + "\n[... " + std::to_string(log.size() - limit) + " more bytes]";
}

// Runs a shell command; returns (exit status, combined output).
inline std::pair<int, std::string> run_command(const std::string& cmd) {
  std::array<char, 4096> buf;
  std::string out;
  FILE* pipe = popen((cmd + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("jaxgemm: cannot run: " + cmd);
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// NVRTC, loaded on first use. The prototypes are NVRTC's stable C ABI.
class Nvrtc {
 public:
  using Program = void*;
  int (*create)(Program*, const char*, const char*, int, const char* const*, const char* const*) = nullptr;
  int (*compile)(Program, int, const char* const*) = nullptr;
  int (*log_size)(Program, size_t*) = nullptr;
  int (*log)(Program, char*) = nullptr;
  int (*cubin_size)(Program, size_t*) = nullptr;
  int (*cubin)(Program, char*) = nullptr;
  int (*destroy)(Program*) = nullptr;
  int (*version)(int*, int*) = nullptr;

  static const Nvrtc& get(const std::string& cuda_home) {
    static Nvrtc nvrtc(cuda_home);
    return nvrtc;
  }

 private:
  explicit Nvrtc(const std::string& cuda_home) {
    std::vector<std::string> candidates;
    for (const char* lib : {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"}) {
      for (const char* sub : {"/lib64/", "/lib/"}) candidates.push_back(cuda_home + sub + lib);
      candidates.push_back(lib);  // the loader's own search path
    }
    void* h = nullptr;
    for (const auto& c : candidates)
      if ((h = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
    if (!h) throw std::runtime_error("jaxgemm: JAXGEMM_JIT_USE_NVRTC=1 but libnvrtc was not found under " + cuda_home);
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn) throw std::runtime_error(std::string("jaxgemm: libnvrtc lacks ") + name);
    };
    sym(create, "nvrtcCreateProgram");
    sym(compile, "nvrtcCompileProgram");
    sym(log_size, "nvrtcGetProgramLogSize");
    sym(log, "nvrtcGetProgramLog");
    sym(cubin_size, "nvrtcGetCUBINSize");
    sym(cubin, "nvrtcGetCUBIN");
    sym(destroy, "nvrtcDestroyProgram");
    sym(version, "nvrtcVersion");
  }
};

struct CompileResult {
  std::string cubin_path;
  bool cache_hit = false;
  double seconds = 0.0;  // compile time; 0 on a cache hit
};

class Compiler {
 public:
  // `name` labels the cache entry; `arch` is e.g. "90a".
  static CompileResult build(const std::string& name, const std::string& source,
                             const std::string& arch) {
    Settings s;
    {
      std::lock_guard<std::mutex> lock(Settings::mutex());
      s = Settings::get();
    }
    const bool nvrtc = Settings::use_nvrtc();
    const std::vector<std::string> flags = common_flags(s, arch);
    Hasher h;
    h.add(source).add(headers_hash(s)).add(arch).add(s.library_version)
        .add(nvrtc ? "nvrtc" : "nvcc").add(compiler_version(s, nvrtc));
    for (const auto& f : flags) h.add(f);
    const std::string key = h.hex();

    KernelCache cache(Settings::cache_dir());
    if (std::string hit = cache.lookup(name, key); !hit.empty()) {
      if (Settings::debug()) std::cerr << "jaxgemm: JIT cache hit " << hit << "\n";
      return {hit, true, 0.0};
    }

    auto start = std::chrono::steady_clock::now();
    fs::path tmp = cache.make_temp(name);
    try {
      if (nvrtc) compile_nvrtc(s, source, flags, arch, tmp);
      else compile_nvcc(s, source, flags, arch, tmp);
    } catch (...) {
      std::error_code ec;
      fs::remove_all(tmp, ec);
      throw;
    }
    CompileResult r;
    r.cubin_path = cache.publish(tmp, name, key);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (Settings::debug())
      std::cerr << "jaxgemm: compiled " << name << " in " << r.seconds << " s -> " << r.cubin_path << "\n";
    return r;
  }

 private:
  static std::vector<std::string> common_flags(const Settings& s, const std::string& arch) {
    std::vector<std::string> flags = {"-std=c++20", "-I" + s.kernel_include, "-I" + s.cutlass_include,
                                      "-I" + s.cuda_home + "/include",
                                      // CUDA 13 keeps libcu++ (cuda/std/...) here; NVRTC has no default path to it.
                                      "-I" + s.cuda_home + "/include/cccl", "-DNDEBUG", "-arch=sm_" + arch};
    // Experiment switches for kernel development (part of the cache key, as flags).
    std::istringstream defines(Settings::extra_defines());
    for (std::string d; defines >> d;) flags.push_back("-D" + d);
    return flags;
  }

  static std::string headers_hash(const Settings& s) {
    static std::mutex m;
    static std::map<std::string, std::string> memo;
    std::lock_guard<std::mutex> lock(m);
    auto it = memo.find(s.kernel_include);
    if (it == memo.end()) it = memo.emplace(s.kernel_include, hash_tree(s.kernel_include)).first;
    return it->second;
  }

  static std::string compiler_version(const Settings& s, bool nvrtc) {
    static std::mutex m;
    static std::map<std::string, std::string> memo;
    std::lock_guard<std::mutex> lock(m);
    const std::string id = nvrtc ? "nvrtc:" + s.cuda_home : s.nvcc_path();
    auto it = memo.find(id);
    if (it != memo.end()) return it->second;
    std::string v;
    if (nvrtc) {
      int major = 0, minor = 0;
      Nvrtc::get(s.cuda_home).version(&major, &minor);
      v = "nvrtc " + std::to_string(major) + "." + std::to_string(minor);
    } else {
      // The binary's identity (path, size, mtime) stands for its version: cheap
      // enough for the warm-cache path, where running `nvcc --version` is not.
      std::error_code ec;
      const fs::path nvcc = s.nvcc_path();
      const auto size = fs::file_size(nvcc, ec);
      if (ec) throw std::runtime_error("jaxgemm: nvcc not found at " + nvcc.string() +
                                       "; set JAXGEMM_CUDA_HOME or JAXGEMM_JIT_NVCC_COMPILER");
      const auto mtime = fs::last_write_time(nvcc, ec).time_since_epoch().count();
      v = "nvcc " + fs::canonical(nvcc, ec).string() + " " + std::to_string(size) + " " + std::to_string(mtime);
    }
    return memo.emplace(id, v).first->second;
  }

  static void compile_nvcc(const Settings& s, const std::string& source,
                           const std::vector<std::string>& flags, const std::string& arch,
                           const fs::path& tmp) {
    write_file(tmp / "kernel.cu", source);
    std::string cmd = shell_quote(s.nvcc_path());
    for (const auto& f : flags) {
      if (f.rfind("-arch=", 0) == 0) continue;
      cmd += " " + shell_quote(f);
    }
    cmd += " -gencode=arch=compute_" + arch + ",code=sm_" + arch + " -O3 -cubin --expt-relaxed-constexpr";
    if (Settings::ptxas_verbose()) cmd += " -Xptxas=-v";
    cmd += " -o " + shell_quote((tmp / "kernel.cubin").string()) + " " +
           shell_quote((tmp / "kernel.cu").string());
    if (Settings::print_compiler_command()) std::cerr << "jaxgemm: " << cmd << "\n";
    auto [rc, out] = run_command(cmd);
    if (rc != 0) throw std::runtime_error("jaxgemm: NVCC failed (" + std::to_string(rc) + "):\n" + head(out) + "\ncommand: " + cmd);
    if (Settings::ptxas_verbose() || Settings::debug()) std::cerr << out;
  }

  static void compile_nvrtc(const Settings& s, const std::string& source,
                            const std::vector<std::string>& flags, const std::string& arch,
                            const fs::path& tmp) {
    const Nvrtc& api = Nvrtc::get(s.cuda_home);
    std::vector<std::string> opts(flags.begin(), flags.end());
    opts.push_back("-default-device");
    opts.push_back("-DJAXGEMM_NVRTC");
    if (Settings::ptxas_verbose()) opts.push_back("--ptxas-options=-v");
    std::vector<const char*> argv;
    for (const auto& o : opts) argv.push_back(o.c_str());
    if (Settings::print_compiler_command()) {
      std::cerr << "jaxgemm: NVRTC";
      for (const auto& o : opts) std::cerr << " " << o;
      std::cerr << "\n";
    }
    Nvrtc::Program prog = nullptr;
    if (api.create(&prog, source.c_str(), "kernel.cu", 0, nullptr, nullptr) != 0)
      throw std::runtime_error("jaxgemm: nvrtcCreateProgram failed");
    int rc = api.compile(prog, static_cast<int>(argv.size()), argv.data());
    size_t log_size = 0;
    api.log_size(prog, &log_size);
    std::string log(log_size, '\0');
    if (log_size) api.log(prog, log.data());
    if (rc != 0) {
      api.destroy(&prog);
      throw std::runtime_error("jaxgemm: NVRTC failed (" + std::to_string(rc) + "):\n" + head(log));
    }
    if (Settings::ptxas_verbose() || Settings::debug()) std::cerr << log;
    size_t size = 0;
    api.cubin_size(prog, &size);
    std::string cubin(size, '\0');
    api.cubin(prog, cubin.data());
    api.destroy(&prog);
    write_file(tmp / "kernel.cu", source);
    write_file(tmp / "kernel.cubin", cubin);
  }
};

}  // namespace jaxgemm::jit
