"""Finding the toolchain and the C++ core, registering FFI targets, SM caps.

Nothing here runs on import: `import jaxgemm` must work on a machine with no
GPU, no driver and no CUDA toolkit. The CUDA lowering calls `ensure_cuda()`.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import threading

import jax

__all__ = [
    "extension",
    "ensure_cuda",
    "kernel_include_dir",
    "cutlass_include_dir",
    "cuda_home",
    "set_num_sms",
    "get_num_sms",
    "device_info",
]

_lock = threading.Lock()
_cuda_ready = False
_num_sms_override: int | None = None

_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent


def extension():
    """The nanobind module `jaxgemm._C` (built by `pip install`)."""
    try:
        from jaxgemm import _C  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "jaxgemm's C++ extension (jaxgemm._C) is not built; install the package with "
            "`pip install .` (see README.md)"
        ) from e
    return _C


def kernel_include_dir() -> str:
    """Folder holding the kernel templates (`sm90/...`): package data once installed,
    `csrc/kernels` in a source checkout."""
    installed = _PACKAGE_DIR / "kernels"
    if (installed / "sm90").is_dir():
        return str(installed)
    source = _PACKAGE_DIR.parent / "csrc" / "kernels"
    if (source / "sm90").is_dir():
        return str(source)
    raise FileNotFoundError("jaxgemm: kernel templates not found (looked in "
                            f"{installed} and {source})")


def cutlass_include_dir() -> str:
    """CuTe/CUTLASS headers: $JAXGEMM_CUTLASS_INCLUDE, else the nvidia-cutlass wheel."""
    env = os.environ.get("JAXGEMM_CUTLASS_INCLUDE")
    if env:
        return env
    spec = importlib.util.find_spec("cutlass_library")  # finds it without importing it
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            inc = pathlib.Path(root) / "source" / "include"
            if (inc / "cute").is_dir():
                return str(inc)
    raise FileNotFoundError(
        "jaxgemm: CuTe/CUTLASS headers not found; `pip install nvidia-cutlass` or set "
        "JAXGEMM_CUTLASS_INCLUDE to a folder holding cute/ and cutlass/")


def _wheel_cuda_homes():
    spec = importlib.util.find_spec("nvidia")
    if spec is None or not spec.submodule_search_locations:
        return []
    homes = []
    for root in spec.submodule_search_locations:
        for sub in ("cu13", "cu12", "cuda_nvcc"):
            homes.append(pathlib.Path(root) / sub)
    return homes


def cuda_home() -> str:
    """The CUDA toolkit the JIT uses, in the design's order: $JAXGEMM_CUDA_HOME, the CUDA
    wheels in this environment, $CUDA_HOME, /usr/local/cuda."""
    env = os.environ.get("JAXGEMM_CUDA_HOME")
    if env:
        return env
    for home in _wheel_cuda_homes():
        if (home / "bin" / "nvcc").exists() and (home / "include" / "cuda.h").exists():
            return str(home)
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env
    return "/usr/local/cuda"


def _library_version() -> str:
    from jaxgemm import __version__  # noqa: PLC0415

    return __version__


def configure_jit():
    """Hands the include paths and version to the C++ JIT. Safe to call again."""
    extension().set_paths(kernel_include_dir(), cutlass_include_dir(), cuda_home(),
                          _library_version())


def ensure_cuda():
    """Registers jaxgemm's FFI targets and state types with the CUDA platform (once)."""
    global _cuda_ready
    with _lock:
        if _cuda_ready:
            return
        ext = extension()
        configure_jit()
        for name, registration in ext.state_types().items():
            jax.ffi.register_ffi_type(name, registration, platform="CUDA")
        for name, stages in ext.registrations().items():
            jax.ffi.register_ffi_target(name, stages, platform="CUDA")
        _cuda_ready = True


def device_info(ordinal: int = 0) -> dict:
    """Arch, SM count and shared-memory limit of one GPU (queried once, kept per ordinal)."""
    return extension().device_info(ordinal)


def set_num_sms(num_sms: int | None) -> None:
    """Caps the SMs the kernels use (for overlap with communication); None restores all.

    Takes effect for functions traced after the call: the grid is chosen at lowering.
    """
    global _num_sms_override
    if num_sms is not None and (not isinstance(num_sms, int) or num_sms <= 0):
        raise ValueError(f"set_num_sms: expected a positive int or None, got {num_sms!r}")
    _num_sms_override = num_sms


def get_num_sms() -> int:
    """The SM count kernels are launched on: the override, else device 0's count."""
    if _num_sms_override is not None:
        return _num_sms_override
    return device_info(0)["num_sms"]
