"""setup.py -- builds the compiled core of the avq Python module, avq._avq
(the metadata is in pyproject.toml; both live at the repository root so that
`pip install .` and an sdist carry the C sources the module is built from).

The C library is built first by the repository's Makefile (`make
build/libavq.a`: position-independent, the SIMD kernels with their own ISA
flags, chosen at run time) and linked statically, so the installed module
needs nothing at run time beyond numpy and OpenBLAS (Debian: libopenblas0).
Set AVQ_STATIC_LIB=/path/to/libavq.a to link a library built elsewhere (then
make is not run).  setuptools' own scratch goes to build/setuptools/, beside
the Makefile's objects, never into the source tree.
"""
import os
import re
import subprocess

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_LIB = os.environ.get("AVQ_STATIC_LIB") or os.path.join(HERE, "build", "libavq.a")


def library_version():
    """The version of the C library (include/avq.h): the module's version."""
    with open(os.path.join(HERE, "include", "avq.h"), encoding="utf-8") as f:
        text = f.read()
    parts = [re.search(rf"#define AVQ_VERSION_{p} (\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


class BuildWithLibrary(build_ext):
    """Bring build/libavq.a up to date with make before compiling."""

    def run(self):
        if not os.environ.get("AVQ_STATIC_LIB"):
            make = os.environ.get("MAKE", "make")
            subprocess.check_call([make, "-C", HERE, "-j2", "build/libavq.a"])
        super().run()


extension = Extension(
    "avq._avq",
    sources=["python/avq/_avq.c"],
    include_dirs=["include", numpy.get_include()],
    extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-fvisibility=hidden"],
    extra_objects=[STATIC_LIB],
    extra_link_args=["-Wl,--exclude-libs,ALL"],
    libraries=["openblas", "pthread", "m"],
    depends=["include/avq.h", STATIC_LIB],
)

setup(version=library_version(), ext_modules=[extension],
      cmdclass={"build_ext": BuildWithLibrary},
      options={"build": {"build_base": os.path.join("build", "setuptools")}})
