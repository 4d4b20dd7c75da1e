# python/python.mk -- the Python extension module, included by the top Makefile.
#
#   make python      build the `avq` package in place, importable from
#                    $(BUILD)/python (the tests put that directory on sys.path):
#                      $(BUILD)/python/avq/_avq<EXT_SUFFIX>   the compiled core
#                      $(BUILD)/python/avq/*.py, *.pyi, py.typed   symlinks to python/avq/
#   make py-wheel    a wheel in $(BUILD)/python/dist (pip, offline, no build isolation)
#   make sdist       a source distribution in $(BUILD)/python/dist (setuptools' PEP 517 hook)
#   make python-clean  remove $(BUILD)/python and setuptools' leftovers
#
# The package itself is defined at the repository root (pyproject.toml,
# setup.py, MANIFEST.in): `pip install .` there, `make install-python`, and
# the two targets above all build from it.
#
# The extension is C11 against the CPython and NumPy C APIs, compiled with
# the project's warnings at -O2 (no CPU-specific flags: the SIMD kernels are
# chosen at run time inside libavq) and linked with the static libavq.a
# (built -fPIC), whose symbols are kept private (--exclude-libs).
#
# Sanitizer builds (make check: SANITIZE set) cannot be loaded into a normal
# /usr/bin/python3 (the ASan runtime must come first), so there the module is
# built from the regular, unsanitized build/ tree; the tests find it there.

PY_EXT_SUFFIX := $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX") or ".so")' 2>/dev/null)
# recursive on purpose: numpy is only imported when the module is compiled
PY_INCLUDES   = $(shell $(PYTHON) -c 'import sysconfig, numpy; print("-isystem", sysconfig.get_paths()["include"], "-isystem", numpy.get_include())')
PY_CFLAGS     = -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) -fPIC -fvisibility=hidden -Iinclude $(PY_INCLUDES)
PY_FILES      = __init__.py __init__.pyi py.typed distributed.py

.PHONY: python py-wheel sdist python-clean

ifeq ($(strip $(SANITIZE)),)
PY_BUILD = $(BUILD)/python
PY_EXT   = $(PY_BUILD)/avq/_avq$(PY_EXT_SUFFIX)
PY_LINKS = $(addprefix $(PY_BUILD)/avq/,$(PY_FILES))

python: $(PY_EXT) $(PY_LINKS)

$(PY_BUILD)/_avq.o: python/avq/_avq.c include/avq.h python/python.mk
	@mkdir -p $(dir $@)
	$(CC) $(PY_CFLAGS) -c $< -o $@

$(PY_EXT): $(PY_BUILD)/_avq.o $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) -shared -o $@ $< $(STATIC_LIB) -Wl,--exclude-libs,ALL $(LDLIBS_LIB)

$(PY_BUILD)/avq/%: python/avq/%
	@mkdir -p $(dir $@)
	ln -srf $< $@
else
python:
	$(MAKE) BUILD=build SANITIZE= OPT="-O2 -g" python
endif

py-wheel:
	$(PYTHON) -m pip wheel --no-build-isolation --no-deps --no-index \
	    -w $(abspath $(BUILD))/python/dist $(CURDIR)

# setuptools' build_sdist hook (python3-build is not needed): the tarball
# carries what MANIFEST.in lists, so a wheel builds from it alone.
sdist:
	@mkdir -p $(BUILD)/python/dist
	$(PYTHON) -c 'import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))' \
	    $(abspath $(BUILD))/python/dist

python-clean:
	rm -rf $(BUILD)/python $(BUILD)/setuptools python/build python/*.egg-info
