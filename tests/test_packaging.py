"""Packaging as a user meets it (issue 17 items 1, 2 and `make help`).

* LICENSE is there and named in the pkg-config file and the Python metadata;
* `make install PREFIX=...` installs the header, both libraries, the CLI and
  avq.pc, and a C program built with `pkg-config --cflags --libs avq` runs
  without LD_LIBRARY_PATH (the .pc's -rpath); `make uninstall` then leaves
  no file behind;
* `pip install .` from the repository root into a venv (offline, Debian's
  setuptools, no build isolation) gives an `avq` importable from outside the
  repository, and an sdist builds a wheel on its own (it carries include/,
  src/ and the Makefile);
* `make help` lists every .PHONY target of the Makefile and its fragments.

Each test skips (with the reason) where a tool it needs is missing.  make
runs without the caller's MAKEFLAGS, so under `make check` (BUILD and
SANITIZE passed down) the install still uses the ordinary build/ tree.
About 30 s in all, most of it the two module builds.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_env():
    env = dict(os.environ)
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD", "SANITIZE",
                "LD_LIBRARY_PATH"):
        env.pop(var, None)
    return env


def run(args, cwd=REPO, env=None, timeout=300):
    r = subprocess.run(args, cwd=cwd, env=env or make_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}"
    return r.stdout


def need(*tools):
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} is not installed")


def library_version():
    text = open(os.path.join(REPO, "include", "avq.h"), encoding="utf-8").read()
    return ".".join(re.search(rf"#define AVQ_VERSION_{p} (\d+)", text).group(1)
                    for p in ("MAJOR", "MINOR", "PATCH"))


# ------------------------------------------------------------------ license

def test_license_file_and_where_it_is_stated():
    text = open(os.path.join(REPO, "LICENSE"), encoding="utf-8").read()
    assert text.startswith("MIT License")
    assert "Copyright (c) 2026 the avq authors" in text
    assert "MIT" in open(os.path.join(REPO, "avq.pc.in"), encoding="utf-8").read()
    pyproject = open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8").read()
    assert re.search(r'^license = \{text = "MIT"\}', pyproject, re.M)
    assert "License :: OSI Approved :: MIT License" in pyproject
    assert re.search(r'license-files = \["LICENSE"\]', pyproject)
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert re.search(r"^## License\n\nMIT", readme, re.M)


# ------------------------------------------------------- make install (C)

C_PROGRAM = r"""
#include <avq.h>
#include <stdio.h>
int main(void) {
    avq_build_params p;
    avq_build_params_init(&p, AVQ_METRIC_COSINE);
    if (avq_version_number() != AVQ_VERSION_NUMBER) return 1;
    printf("avq %s metric %d\n", avq_version(), (int)p.metric);
    return 0;
}
"""

INSTALLED = ["include/avq.h", "lib/libavq.a", "lib/libavq.so.0", "lib/libavq.so",
             "lib/pkgconfig/avq.pc", "bin/avq"]


def installed_files(prefix):
    out = []
    for dirpath, dirs, files in os.walk(prefix):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            out.append(os.path.relpath(os.path.join(dirpath, name), prefix))
    return sorted(out)


def test_make_install_pkg_config_program_runs_without_ld_library_path_and_uninstall(tmp_path):
    need("make", "cc", "pkg-config")
    header = open(os.path.join(REPO, "include", "avq.h"), encoding="utf-8").read()
    if "AVQ_VERSION_NUMBER" not in header:
        pytest.skip("avq.h has no AVQ_VERSION_NUMBER")
    prefix = str(tmp_path / "prefix")
    run(["make", "-s", "-j2", "install", f"PREFIX={prefix}"])
    assert installed_files(prefix) == sorted(INSTALLED)
    pc = open(os.path.join(prefix, "lib/pkgconfig/avq.pc"), encoding="utf-8").read()
    assert f"prefix={prefix}\n" in pc
    assert f"Version: {library_version()}\n" in pc
    assert "MIT" in pc

    env = make_env()
    env["PKG_CONFIG_PATH"] = os.path.join(prefix, "lib", "pkgconfig")
    flags = run(["pkg-config", "--cflags", "--libs", "avq"], env=env).split()
    assert f"-Wl,-rpath,{prefix}/lib" in flags
    src = tmp_path / "t.c"
    src.write_text(C_PROGRAM)
    exe = str(tmp_path / "t")
    run(["cc", "-std=c11", str(src), "-o", exe] + flags, env=env)
    env.pop("LD_LIBRARY_PATH", None)
    out = run([exe], env=env)
    assert out.startswith(f"avq {library_version()} ")
    # the installed CLI finds the installed library ($ORIGIN/../lib)
    out = run([os.path.join(prefix, "bin", "avq"), "--version"], env=env)
    assert os.path.join(prefix, "bin", "../lib/libavq.so.0") in out

    # a file of the user's in the prefix survives; everything installed goes
    keep = os.path.join(prefix, "lib", "mine.txt")
    open(keep, "w").write("not avq's\n")
    run(["make", "-s", "uninstall", f"PREFIX={prefix}"])
    assert installed_files(prefix) == ["lib/mine.txt"]
    # the program no longer starts: it really used the installed library
    r = subprocess.run([exe], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert r.returncode != 0 and "libavq.so.0" in r.stderr


# ----------------------------------------------------------- Python package

@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    need("make", "cc")
    for mod in ("setuptools", "wheel", "venv", "ensurepip", "numpy"):
        if subprocess.run([sys.executable, "-c", f"import {mod}"],
                          stderr=subprocess.DEVNULL).returncode != 0:
            pytest.skip(f"{sys.executable} has no {mod} (python3-setuptools, python3-wheel, "
                        "python3-venv)")
    path = str(tmp_path_factory.mktemp("venv") / "v")
    run([sys.executable, "-m", "venv", "--system-site-packages", path])
    return os.path.join(path, "bin", "python")


def pip(py, *args, cwd=REPO):
    env = make_env()
    env["PIP_NO_INDEX"] = "1"                # offline: nothing may be downloaded
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return run([py, "-m", "pip", *args], cwd=cwd, env=env)


IMPORT_CHECK = r"""
import sys, importlib.metadata as md, numpy as np
import avq
assert "site-packages" in avq.__file__, avq.__file__
x = np.random.default_rng(0).standard_normal((1000, 8)).astype(np.float32)
ids, _ = avq.Index.build(x, "cosine").search(x[5], k=1)
meta = md.metadata("avq")
print(avq.__version__, int(ids[0]), meta["License"])
"""


def test_pip_install_from_the_root_and_import_outside_the_repository(venv, tmp_path):
    pip(venv, "install", "--no-build-isolation", "--no-deps", REPO)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = run([venv, "-c", IMPORT_CHECK], cwd=str(outside))
    assert out.split() == [library_version(), "5", "MIT"]
    pip(venv, "uninstall", "-y", "avq")
    r = subprocess.run([venv, "-c", "import avq"], cwd=str(outside), stderr=subprocess.PIPE)
    assert r.returncode != 0


def test_sdist_carries_the_c_sources_and_builds_a_wheel_alone(venv, tmp_path):
    dist = tmp_path / "dist"
    dist.mkdir()
    name = run([sys.executable, "-c",
                "import sys; from setuptools import build_meta as b; "
                "print(b.build_sdist(sys.argv[1]))", str(dist)]).strip().splitlines()[-1]
    sdist = dist / name
    with tarfile.open(sdist) as t:
        members = {m.split("/", 1)[1] for m in t.getnames() if "/" in m}
    top = f"avq-{library_version()}"
    assert name == f"{top}.tar.gz"
    wanted = ["LICENSE", "Makefile", "setup.py", "pyproject.toml", "include/avq.h",
              "python/python.mk", "fuzz/fuzz.mk", "python/avq/_avq.c", "python/avq/__init__.py"]
    wanted += [os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "src", "**", "*.[ch]"),
                                                           recursive=True)]
    missing = [w for w in wanted if w not in members]
    assert not missing, f"the sdist lacks {missing}"
    assert not [m for m in members if m.startswith(("build/", "data/"))]

    # the wheel is built from the unpacked sdist alone (make runs there)
    wheels = tmp_path / "wheels"
    pip(venv, "wheel", "--no-build-isolation", "--no-deps", "-w", str(wheels), str(sdist),
        cwd=str(tmp_path))
    (whl,) = glob.glob(str(wheels / "avq-*.whl"))
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        meta = z.read(f"{top}.dist-info/METADATA").decode()
    assert any(re.fullmatch(r"avq/_avq\..*\.so", n) for n in names)
    assert f"{top}.dist-info/LICENSE" in names
    assert not [n for n in names if n.endswith(".c")]
    assert "License: MIT" in meta and "Classifier: License :: OSI Approved :: MIT License" in meta
    pip(venv, "install", "--no-deps", "--force-reinstall", whl)
    out = run([venv, "-c", IMPORT_CHECK], cwd=str(tmp_path))
    assert out.split() == [library_version(), "5", "MIT"]
    pip(venv, "uninstall", "-y", "avq")


# ---------------------------------------------------------------- make help

def phony_targets():
    """Every .PHONY target named in the Makefile and the *.mk files it
    includes (read as text, independently of `make help`'s own reading)."""
    files = [os.path.join(REPO, "Makefile")]
    text = open(files[0], encoding="utf-8").read()
    for m in re.finditer(r"^-?include\s+(\S+\.mk)\s*$", text, re.M):
        path = os.path.join(REPO, m.group(1))
        if os.path.isfile(path):
            files.append(path)
    targets = {}
    for path in files:
        body = open(path, encoding="utf-8").read().replace("\\\n", " ")
        for m in re.finditer(r"^\.PHONY:(.*)$", body, re.M):
            for t in m.group(1).split():
                if "$" not in t and "/" not in t:
                    targets.setdefault(t, os.path.relpath(path, REPO))
    return targets


def test_make_help_lists_every_target_once():
    need("make")
    out = run(["make", "-s", "help"])
    listed = re.findall(r"^  make (\S+)\s+(.*)$", out, re.M)
    names = [n for n, _ in listed]
    assert len(names) == len(set(names)), "a target is listed twice"
    targets = phony_targets()
    for must in ("all", "help", "test", "install", "uninstall", "install-python", "bench",
                 "python", "sdist", "clean"):
        assert must in targets
    missing = sorted(set(targets) - set(names))
    assert not missing, f"make help does not list {missing}"
    extra = sorted(set(names) - set(targets))
    assert not extra, f"make help lists {extra}, which are no .PHONY targets"
    # the targets of the Makefile and the Python fragment all say what they do
    desc = dict(listed)
    undescribed = [t for t, f in targets.items()
                   if f in ("Makefile", "python/python.mk") and desc[t] == "(no description)"]
    assert not undescribed, f"no '#   make TARGET  text' line for {undescribed}"
    assert desc["install"].startswith("PREFIX=/usr/local")
