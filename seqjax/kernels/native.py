"""The C++ gate kernels of the fused LSTM/GRU layers (`rnn_gates.cc`): build, load, register with XLA.

The kernels are compiled with the system C++ compiler against the XLA FFI headers that ship with the
installed jaxlib (`jax.ffi.include_dir()`), so the binary always matches the jaxlib it runs in:

    python -m seqjax.kernels.native          # build now (CI does this right after `pip install`), print it

The shared library goes to a cache directory (`$SEQJAX_KERNEL_DIR`, else `$XDG_CACHE_HOME/seqjax/kernels`,
else `~/.cache/seqjax/kernels`) under a name that hashes the sources, the jaxlib version and the compiler
command; a process that finds it there loads it, one that does not builds it first (about 10 s), so a
changed source or a new jaxlib rebuilds by itself. Builds write a temporary file and rename it: concurrent
processes (pytest -n 2) never load a half-written library.

`load()` returns None, and logs one line saying why and that the pure-JAX fused layers run instead, when
the kernels are switched off (`SEQJAX_NATIVE_RNN=0`), the default backend is not the CPU, there is no
compiler, or the build or load fails. Nothing else in seqjax needs them.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import pathlib
import shutil
import subprocess
import tempfile

import jax

log = logging.getLogger(__name__)

SOURCES = ("rnn_gates.cc", "rnn_gates_loops.inc")
TARGETS = ("seqjax_lstm_fwd", "seqjax_lstm_bwd", "seqjax_gru_fwd", "seqjax_gru_bwd", "seqjax_gru_orig_rz",
           "seqjax_gru_orig_n", "seqjax_gru_orig_bwd_n", "seqjax_gru_orig_bwd_rz")
ISAS = ("baseline", "avx2", "avx512")  # the code paths in rnn_gates.cc, by the index it reports
DISABLE_ENV = "SEQJAX_NATIVE_RNN"  # "0": never build or load the kernels
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")
BUILD_TIMEOUT_S = 300

_state: dict = {}  # "lib": the loaded library or None once decided; "reason": why None
_registered: dict = {}  # library path -> loaded library; XLA's target registry lasts for the process


def cache_dir() -> pathlib.Path:
    if os.environ.get("SEQJAX_KERNEL_DIR"):
        return pathlib.Path(os.environ["SEQJAX_KERNEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "seqjax" / "kernels"


def compiler() -> str | None:
    """The C++ compiler: $CXX, else g++ on PATH (None if neither is there)."""
    return os.environ.get("CXX") or shutil.which("g++")


def _command(cxx: str, source: pathlib.Path, out: pathlib.Path) -> list[str]:
    return [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(source), "-o", str(out)]


def library_path(cxx: str) -> pathlib.Path:
    """Where the library for these sources, this jaxlib and this compiler command lives."""
    here = pathlib.Path(__file__).parent
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((here / name).read_bytes())
    for header in sorted((pathlib.Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api").glob("*.h")):
        digest.update(header.read_bytes())  # the FFI ABI of the installed jaxlib
    digest.update(" ".join(_command(cxx, pathlib.Path("src"), pathlib.Path("out"))).encode())
    return cache_dir() / f"rnn_gates-{digest.hexdigest()[:16]}.so"


def build(force: bool = False) -> pathlib.Path:
    """Compile the kernels into the cache (unless there already); returns the library's path.

    Raises RuntimeError naming the problem (no compiler, compiler errors, timeout)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler: g++ is not on PATH and $CXX is not set")
    path = library_path(cxx)
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        cmd = _command(cxx, pathlib.Path(__file__).parent / SOURCES[0], pathlib.Path(tmp))
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"compiling {SOURCES[0]} failed: {e}") from e
        if done.returncode != 0:
            raise RuntimeError(f"compiling {SOURCES[0]} failed ({' '.join(cmd)}):\n{done.stderr[-2000:]}")
        os.chmod(tmp, 0o755)  # mkstemp's 0600 would keep other users of a shared cache from loading it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _register(lib: ctypes.CDLL) -> None:
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")


def load():
    """The loaded kernel library, or None (logged once per process, with the reason) if it cannot be used."""
    if "lib" in _state:
        return _state["lib"]
    lib, reason, level = None, None, logging.WARNING
    if os.environ.get(DISABLE_ENV, "1") == "0":
        reason = f"switched off ({DISABLE_ENV}=0)"
    elif jax.default_backend() != "cpu":  # expected on an accelerator: said, not warned
        reason = f"the default backend is {jax.default_backend()!r}, and the kernels are CPU code"
        level = logging.INFO
    else:
        try:
            path = str(build())
            if path not in _registered:
                _registered[path] = ctypes.CDLL(path)
                _register(_registered[path])
            lib = _registered[path]
        except (RuntimeError, OSError, AttributeError) as e:
            lib, reason = None, str(e)
    if lib is None:
        log.log(level, "seqjax: native RNN gate kernels not used: %s; the pure-JAX fused LSTM/GRU layers "
                "run instead", reason)
    _state.update(lib=lib, reason=reason)
    return lib


def available() -> bool:
    return load() is not None


def reason() -> str | None:
    """Why the kernels are not used (None while they are, or before `load()` decided)."""
    return _state.get("reason")


def isa() -> str:
    """The code path the kernels run ("avx512", "avx2" or "baseline"); needs the library."""
    lib = load()
    if lib is None:
        raise RuntimeError(f"native RNN kernels unavailable: {reason()}")
    return ISAS[lib.seqjax_isa()]


def set_isa(name: str) -> str:
    """Use at most this code path (tests run each path the CPU has); returns the path now in use."""
    if name not in ISAS:
        raise ValueError(f"isa: expected one of {ISAS}, got {name!r}")
    lib = load()
    if lib is None:
        raise RuntimeError(f"native RNN kernels unavailable: {reason()}")
    return ISAS[lib.seqjax_set_isa(ISAS.index(name))]


def reset() -> None:
    """Forget the load decision (tests: decide again after changing the environment)."""
    _state.clear()


if __name__ == "__main__":
    import sys
    try:
        built = build()
    except RuntimeError as e:
        print(f"seqjax native RNN kernels: build FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"seqjax native RNN kernels: {built} (code path {isa()})")
