"""seqjax.allocator: the malloc choice from the platform's facts, and the CLIs' one re-execution."""
import os
import subprocess
import sys

import pytest

from seqjax import allocator
from seqjax.allocator import Platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD = Platform(glibc=(2, 36), thp="madvise", tcmalloc=None)
TC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def test_hugetlb_where_glibc_and_thp_support_it():
    for thp in ("madvise", "always"):
        d = allocator.decide(GOOD._replace(thp=thp), {})
        assert d.allocator == "hugetlb" and d.env == {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
        assert thp in d.reason
    # Other tunables are kept, the huge-page one appended.
    d = allocator.decide(GOOD, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert d.env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize("platform, why", [
    (GOOD._replace(glibc=(2, 34)), "glibc 2.34 < 2.35"),
    (GOOD._replace(thp="never"), "transparent huge pages 'never'"),
    (GOOD._replace(thp=None), "no transparent huge pages"),
    (GOOD._replace(glibc=None), "not glibc"),
])
def test_unsupported_platform_falls_back_to_tcmalloc_then_system(platform, why):
    d = allocator.decide(platform, {})
    assert d.allocator == "system" and d.env == {} and why in d.reason
    d = allocator.decide(platform._replace(tcmalloc=TC), {"LD_PRELOAD": "libfoo.so"})
    assert d.allocator == "tcmalloc" and d.env == {"LD_PRELOAD": f"libfoo.so {TC}"} and why in d.reason
    with pytest.raises(ValueError, match="hugetlb: not supported here"):
        allocator.decide(platform, {}, "hugetlb")


def test_environment_already_set_is_kept_and_not_re_executed():
    for env, kind in (({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}, "hugetlb"),
                      ({"LD_PRELOAD": TC}, "tcmalloc")):
        d = allocator.decide(GOOD._replace(tcmalloc=TC), env)
        assert (d.allocator, d.env, d.reason) == (kind, {}, "set by the environment")
        assert allocator.in_effect(env) == kind


def test_opt_out_and_explicit_choices():
    for env, choice in (({"SEQJAX_MALLOC": "system"}, None), ({}, "system"),
                        ({"SEQJAX_MALLOC": "auto"}, "system")):
        d = allocator.decide(GOOD, env, choice)
        assert d.allocator == "system" and d.env == {} and "turned off" in d.reason
    d = allocator.decide(GOOD._replace(tcmalloc=TC), {"SEQJAX_MALLOC": "tcmalloc"})
    assert d.allocator == "tcmalloc"
    with pytest.raises(ValueError, match="no libtcmalloc installed"):
        allocator.decide(GOOD, {}, "tcmalloc")
    with pytest.raises(ValueError, match="expected one of"):
        allocator.decide(GOOD, {"SEQJAX_MALLOC": "huge"})
    assert allocator.from_argv(["--x=1", "--malloc=system"]) == "system"
    assert allocator.from_argv(["--malloc", "tcmalloc"]) == "tcmalloc"
    assert allocator.from_argv(["--mallocs=1"]) is None


def test_cli_re_executes_once_with_the_variable_set_and_logs_one_line():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "SEQJAX_MALLOC",
                                                             allocator.ENV_DONE)}
    expected = allocator.decide(allocator.platform(), env)
    out = subprocess.run([sys.executable, "-m", "seqjax.viz", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m seqjax.viz")  # the re-executed process ran the CLI
    lines = [line for line in out.stderr.splitlines() if "malloc:" in line]
    assert lines == [f"python -m seqjax.viz: {allocator.describe(expected)}"], out.stderr
    # The re-executed process reads the allocator from its own environment: "glibc huge pages" in the line
    # above means GLIBC_TUNABLES was set there. Opting out keeps the default and says so.
    out = subprocess.run([sys.executable, "-m", "seqjax.viz", "--help"], cwd=ROOT,
                         env={**env, "SEQJAX_MALLOC": "system"}, capture_output=True, text=True, timeout=120)
    assert "malloc: the system default: tuning turned off (SEQJAX_MALLOC=system)" in out.stderr
