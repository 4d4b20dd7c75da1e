"""Build script of the avq extension (the metadata is in pyproject.toml).

The C library is built by the repository's Makefile (`make build/libavq.a`,
position-independent) and linked statically, so the wheel needs nothing at
run time beyond numpy and OpenBLAS (Debian: libopenblas0).  Set
AVQ_STATIC_LIB=/path/to/libavq.a to link a library built elsewhere (then
make is not run).
"""
import os
import re
import subprocess

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
STATIC_LIB = os.environ.get("AVQ_STATIC_LIB") or os.path.join(REPO, "build", "libavq.a")


def library_version():
    text = open(os.path.join(REPO, "include", "avq.h"), encoding="utf-8").read()
    parts = [re.search(rf"#define AVQ_VERSION_{p} (\d+)", text).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


class BuildWithLibrary(build_ext):
    """Bring build/libavq.a up to date with make before compiling."""

    def run(self):
        if not os.environ.get("AVQ_STATIC_LIB"):
            subprocess.check_call(["make", "-C", REPO, "build/libavq.a"])
        super().run()


extension = Extension(
    "avq._avq",
    sources=["avq/_avq.c"],
    include_dirs=[os.path.join(REPO, "include"), numpy.get_include()],
    extra_compile_args=["-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra",
                        "-Wno-unused-parameter", "-fvisibility=hidden"],
    extra_objects=[STATIC_LIB],
    extra_link_args=["-Wl,--exclude-libs,ALL"],
    libraries=["openblas", "pthread", "m"],
    depends=[os.path.join(REPO, "include", "avq.h"), STATIC_LIB],
)

setup(version=library_version(), ext_modules=[extension],
      cmdclass={"build_ext": BuildWithLibrary})
