"""AVQ_ISA is obeyed or, when it cannot be, says so (issue 17 item 3).

The kernel set is chosen once per process (src/cpu.c); `avq --version`
prints the choice.  A value that is not a kernel set of this build (a typo,
another architecture's name, the wrong case) or one this CPU cannot run must
not fall back silently: exactly one line on stderr names the value, the
valid ones and the set used instead.  Unset or empty means "the best", with
no warning.

The "cannot run on this CPU" case needs a CPU without AVX-512 or AVX2: the
CLI is run under qemu-x86_64 with CPU models that lack them, when qemu-user
is installed (scripts/deps_arm64.sh installs it, CI runs that first).
"""

import os
import platform
import re
import shutil
import subprocess

import pytest

X86 = platform.machine() in ("x86_64", "AMD64")
LADDER = ["avx512", "avx2", "scalar"] if X86 else ["neon", "scalar"]
VALID = ", ".join(LADDER)


def version(avq_bin, isa, prefix=()):
    env = dict(os.environ)
    env.pop("AVQ_ISA", None)
    if isa is not None:
        env["AVQ_ISA"] = isa
    r = subprocess.run([*prefix, avq_bin, "--version"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    m = re.search(r"\(SIMD: (\w+),", r.stdout)
    assert m, r.stdout
    return m.group(1), r.stderr


@pytest.fixture(scope="module")
def best(avq_bin):
    isa, err = version(avq_bin, None)
    assert isa in LADDER
    assert "AVQ_ISA" not in err
    return isa


def warnings(err):
    return [line for line in err.splitlines() if "AVQ_ISA" in line]


def test_unset_and_empty_choose_the_best_silently(avq_bin, best):
    isa, err = version(avq_bin, "")
    assert (isa, warnings(err)) == (best, [])


def test_every_runnable_name_is_obeyed_silently(avq_bin, best):
    # everything at or below the best one can run
    for name in LADDER[LADDER.index(best):]:
        isa, err = version(avq_bin, name)
        assert (isa, warnings(err)) == (name, []), name


@pytest.mark.parametrize("value", ["sse9", "AVX2", "avx2 ", "neon" if X86 else "avx2",
                                   "x" * 300])
def test_unknown_value_warns_once_and_uses_the_best(avq_bin, best, value):
    isa, err = version(avq_bin, value)
    assert isa == best
    lines = warnings(err)
    assert len(lines) == 1, err
    # the value (long ones cut to 40 characters), why, the valid ones, the choice
    assert lines[0] == (f"avq: warning: AVQ_ISA={value[:40]} is not a kernel set of this "
                        f"build (valid: {VALID}); using {best} instead"), lines[0]


def test_known_value_the_cpu_cannot_run_warns_and_falls_back(avq_bin):
    qemu = shutil.which("qemu-x86_64")
    if not X86 or not qemu:
        pytest.skip("needs qemu-x86_64 (qemu-user) on an x86-64 host")
    with open(avq_bin, "rb") as f:
        if b"libasan" in f.read():  # linked with the ASan runtime
            # ASan's shadow mapping does not survive qemu-user (the process
            # is killed): the sanitizer run checks everything else
            pytest.skip("an ASan build cannot run under qemu-user")
    # qemu's "qemu64" model has neither AVX2 nor AVX-512: everything falls to scalar
    old_cpu = (qemu, "-cpu", "qemu64")
    for name in ("avx512", "avx2"):
        isa, err = version(avq_bin, name, prefix=old_cpu)
        assert isa == "scalar"
        assert warnings(err) == [f"avq: warning: AVQ_ISA={name} cannot run on this CPU "
                                 f"(valid: {VALID}); using scalar instead"], err
    for value in ("scalar", None):
        isa, err = version(avq_bin, value, prefix=old_cpu)
        assert (isa, warnings(err)) == ("scalar", [])
    # its "max" model (QEMU 7.2+) has AVX2 but no AVX-512: the next rung down
    max_cpu = (qemu, "-cpu", "max")
    if version(avq_bin, None, prefix=max_cpu)[0] != "avx2":
        pytest.skip("this qemu's max CPU model has no AVX2 (QEMU < 7.2)")
    isa, err = version(avq_bin, "avx512", prefix=max_cpu)
    assert isa == "avx2"
    assert warnings(err) == [f"avq: warning: AVQ_ISA=avx512 cannot run on this CPU "
                             f"(valid: {VALID}); using avx2 instead"], err
