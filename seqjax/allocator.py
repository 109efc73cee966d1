"""The process's malloc: glibc's transparent-huge-page mode (or tcmalloc) instead of 4 KiB pages.

Why: a seqjax training step on the CPU touches tens of MiB of freshly allocated buffers. With glibc's default
malloc those are fresh 4 KiB pages every step (about 18.7K page faults per LSTM step, ~1.5 us each, measured;
see benchmarks/README.md). With `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (glibc >= 2.35, transparent huge
pages in `madvise` or `always` mode) malloc asks the kernel for 2 MiB pages, and tcmalloc keeps freed memory;
either drops the faults to hundreds per step. PyTorch is timed on the same allocator in the benchmarks.

glibc reads its tunables once, at process start, so the only way to switch is to start again: `tune_process()`
re-executes the current command line once (`os.execve`) with the variable set. launch.py, `python -m
seqjax.sample`, `python -m seqjax.viz` and the benchmark workers call it before JAX is imported.

Library users, as the first lines of a script (before `import jax`):

    import seqjax.allocator; seqjax.allocator.tune_process()

or start Python with the variable yourself: `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python script.py`.

Opting out: `SEQJAX_MALLOC=system` in the environment (or `launch.py --malloc=system`). The other values are
`auto` (the default: hugetlb where supported, else tcmalloc where installed, else the system malloc),
`hugetlb` and `tcmalloc` (that one, or an error naming why it cannot be had).

This module imports only the standard library: it runs before anything heavy is loaded.
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys
from typing import NamedTuple

ENV_CHOICE = "SEQJAX_MALLOC"  # auto | hugetlb | tcmalloc | system
ENV_DONE = "SEQJAX_MALLOC_DONE"  # set on the re-executed process: what was chosen (the loop guard)
CHOICES = ("auto", "hugetlb", "tcmalloc", "system")
HUGETLB_TUNABLE = "glibc.malloc.hugetlb=1"
MIN_GLIBC = (2, 35)  # first glibc with glibc.malloc.hugetlb
THP_PATH = "/sys/kernel/mm/transparent_hugepage/enabled"
TCMALLOC_GLOBS = ("/usr/lib/*/libtcmalloc_minimal.so.4", "/usr/lib/*/libtcmalloc.so.4",
                  "/usr/lib/libtcmalloc_minimal.so.4", "/usr/lib64/libtcmalloc_minimal.so.4")


class Platform(NamedTuple):
    """The facts the choice depends on (`platform()` reads them from this machine)."""
    glibc: tuple[int, int] | None  # None: not glibc (musl, macOS) or unknown
    thp: str | None  # the bracketed mode of THP_PATH: "always" | "madvise" | "never"; None: no such file
    tcmalloc: str | None  # path of an installed libtcmalloc, or None


class Decision(NamedTuple):
    """What to run with: `allocator` is "hugetlb" | "tcmalloc" | "system"; `env` holds the variables to set
    (empty: nothing to change, no re-exec); `reason` is the log line's explanation."""
    allocator: str
    env: dict[str, str]
    reason: str


def in_effect(env: dict[str, str]) -> str:
    """The allocator an environment gives a process started with it: "hugetlb" | "tcmalloc" | "system"."""
    if "tcmalloc" in env.get("LD_PRELOAD", ""):
        return "tcmalloc"
    tunables = env.get("GLIBC_TUNABLES", "").split(":")
    return "hugetlb" if any(t.replace(" ", "") == HUGETLB_TUNABLE for t in tunables) else "system"


def decide(platform: Platform, env: dict[str, str], choice: str | None = None) -> Decision:
    """The allocator for a process with environment `env` on `platform`; a pure function.

    choice: "auto" | "hugetlb" | "tcmalloc" | "system"; None reads `env[SEQJAX_MALLOC]` (default "auto").
    An allocator the environment already sets (GLIBC_TUNABLES, LD_PRELOAD) is kept as it is.
    """
    choice = env.get(ENV_CHOICE, "auto") if choice is None else choice
    if choice not in CHOICES:
        raise ValueError(f"malloc ({ENV_CHOICE} or --malloc): expected one of {CHOICES}, got {choice!r}")
    current = in_effect(env)
    if choice == "system":
        return Decision(current, {}, f"tuning turned off ({ENV_CHOICE}=system)" if current == "system"
                        else f"{ENV_CHOICE}=system, but the environment already sets {current}")
    if current != "system":
        return Decision(current, {}, "set by the environment")
    hugetlb_ok = platform.glibc is not None and platform.glibc >= MIN_GLIBC and platform.thp in ("always",
                                                                                                  "madvise")
    if choice in ("auto", "hugetlb") and hugetlb_ok:
        tunables = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), HUGETLB_TUNABLE) if t)
        return Decision("hugetlb", {"GLIBC_TUNABLES": tunables},
                        f"glibc {platform.glibc[0]}.{platform.glibc[1]}, transparent huge pages "
                        f"'{platform.thp}'")
    why_not = ("not glibc" if platform.glibc is None else
               f"glibc {platform.glibc[0]}.{platform.glibc[1]} < 2.35" if platform.glibc < MIN_GLIBC else
               f"transparent huge pages '{platform.thp}'" if platform.thp is not None else
               "no transparent huge pages")
    if choice in ("auto", "tcmalloc") and platform.tcmalloc:
        preload = " ".join(p for p in (env.get("LD_PRELOAD", ""), platform.tcmalloc) if p)
        return Decision("tcmalloc", {"LD_PRELOAD": preload},
                        f"preloading {platform.tcmalloc}" + (f" (no hugetlb: {why_not})" if choice == "auto"
                                                              else ""))
    if choice == "hugetlb":
        raise ValueError(f"{ENV_CHOICE}=hugetlb: not supported here ({why_not})")
    if choice == "tcmalloc":
        raise ValueError(f"{ENV_CHOICE}=tcmalloc: no libtcmalloc installed (Debian: libtcmalloc-minimal4)")
    return Decision("system", {}, f"no tuned malloc available ({why_not}; no tcmalloc)")


def platform() -> Platform:
    """This machine's glibc version, THP mode and tcmalloc (read, never changed)."""
    glibc = None
    try:
        version = ctypes.CDLL(None).gnu_get_libc_version
        version.restype = ctypes.c_char_p
        major, minor = version().decode().split(".")[:2]
        glibc = (int(major), int(minor))
    except (AttributeError, OSError, ValueError):
        pass
    thp = None
    try:
        with open(THP_PATH) as f:
            text = f.read()
        thp = text[text.index("[") + 1:text.index("]")]
    except (OSError, ValueError):
        pass
    tcmalloc = next((p for pattern in TCMALLOC_GLOBS for p in sorted(glob.glob(pattern))), None)
    return Platform(glibc, thp, tcmalloc)


def describe(decision: Decision) -> str:
    """The one log line: which malloc, why, and how to turn it off."""
    name = {"hugetlb": f"glibc huge pages ({HUGETLB_TUNABLE})", "tcmalloc": "tcmalloc",
            "system": "the system default"}[decision.allocator]
    off = f"; {ENV_CHOICE}=system turns it off" if decision.allocator != "system" else ""
    return f"malloc: {name}: {decision.reason}{off}"


def tune_process(choice: str | None = None, argv: list[str] | None = None, log=None) -> Decision:
    """Re-execute this process once with the decided allocator; returns the decision in effect.

    Call it before importing JAX (anything loaded before is loaded twice). In the re-executed process
    `SEQJAX_MALLOC_DONE` is set, so it never executes again (and says what the first process decided).
    argv: the command to re-run (default: this interpreter with `sys.orig_argv`, so `python -m mod` and
    `python script.py` both work). log: called with the one-line description (default: not logged).
    """
    env = dict(os.environ)
    if ENV_DONE in env:
        decision = Decision(in_effect(env), {}, env[ENV_DONE].partition(":")[2])
    else:
        decision = decide(platform(), env, choice)
        if decision.env:
            reason = decision.reason
            env.update(decision.env, **{ENV_DONE: f"{decision.allocator}:{reason}"})
            argv = argv if argv is not None else [sys.executable, *sys.orig_argv[1:]]
            sys.stdout.flush()
            sys.stderr.flush()
            os.execve(sys.executable, argv, env)
    if log is not None:
        log(describe(decision))
    return decision


def from_argv(argv: list[str], flag: str = "--malloc") -> str | None:
    """The value of `--malloc=X` / `--malloc X` in argv (launch.py's flag, read before absl parses), or
    None."""
    for i, arg in enumerate(argv):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def tune_cli(prog: str) -> Decision:
    """`tune_process` for a command-line program: the decision logged as one stderr line, a bad
    SEQJAX_MALLOC one error line and exit status 2 (seqjax.cli's convention)."""
    try:
        return tune_process(log=lambda line: print(f"{prog}: {line}", file=sys.stderr, flush=True))
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
