"""datalib -- vector files in numpy, for the project's Python scripts.

The C side (tools/dataset.c) is the reference reader; this module mirrors
its rules for scripts that prepare data, run benchmarks or make plots:
TEXMEX .fvecs/.ivecs/.bvecs (every row is a little-endian int32 dimension
followed by that many float32 / int32 / uint8 values) and gzipped or plain
IDX files (the MNIST family).  Readers validate as strictly as the C code
(ragged, truncated, empty files are errors naming the file), and writers
replace their target atomically so a killed script never leaves a short
file that looks complete.

Only numpy and the standard library are needed.
"""

import gzip
import hashlib
import os
import struct

import numpy as np

MAX_DIM = 1_000_000


class DataError(Exception):
    """A file that is missing, malformed or inconsistent."""


# --------------------------------------------------------------------------
# TEXMEX vecs
# --------------------------------------------------------------------------

def _read_vecs(path, elem_dtype):
    raw = np.fromfile(path, dtype=np.uint8)
    elem = np.dtype(elem_dtype).itemsize
    if raw.size == 0:
        raise DataError(f"{path}: empty file")
    if raw.size < 4:
        raise DataError(f"{path}: truncated: no complete dimension header")
    dim = int(raw[:4].view("<i4")[0])
    if dim <= 0 or dim > MAX_DIM:
        raise DataError(f"{path}: row 0 declares dimension {dim} (must be 1..{MAX_DIM})")
    row_bytes = 4 + dim * elem
    rows = raw.size // row_bytes
    body = raw[: rows * row_bytes].reshape(rows, row_bytes)
    dims = body[:, :4].copy().view("<i4").ravel()
    bad = np.nonzero(dims != dim)[0]
    if bad.size:
        r = int(bad[0])
        raise DataError(f"{path}: row {r} has dimension {int(dims[r])}, expected {dim}")
    if raw.size != rows * row_bytes:
        raise DataError(f"{path}: truncated: row {rows} needs {row_bytes} bytes at offset "
                        f"{rows * row_bytes}, file has {raw.size}")
    return np.ascontiguousarray(body[:, 4:]).view(elem_dtype).reshape(rows, dim)


def read_fvecs(path):
    """float32 matrix (rows x dim) from an .fvecs file."""
    x = _read_vecs(path, "<f4").astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{path}: row {r} column {c} is {x[r, c]}")
    return x


def read_ivecs(path):
    """int32 matrix from an .ivecs file."""
    return _read_vecs(path, "<i4").astype(np.int32, copy=False)


def read_bvecs(path):
    """uint8 matrix from a .bvecs file."""
    return _read_vecs(path, "u1")


def _atomic_write(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _write_vecs(path, x, dtype):
    x = np.ascontiguousarray(x, dtype=dtype)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{path}: need a non-empty 2-D array, got shape {x.shape}")
    rows, dim = x.shape
    # Work on the raw 32-bit patterns so float payloads are copied bit for bit.
    out = np.empty((rows, dim + 1), dtype="<i4")
    out[:, 0] = dim
    out[:, 1:] = x.view("<i4")
    _atomic_write(path, lambda f: out.tofile(f))


def write_fvecs(path, x):
    """Write a 2-D array as float32 .fvecs (atomically)."""
    _write_vecs(path, x, "<f4")


def write_ivecs(path, x):
    """Write a 2-D integer array as int32 .ivecs (atomically)."""
    x = np.asarray(x)
    if x.size and (x.min() < -2**31 or x.max() >= 2**31):
        raise ValueError(f"{path}: values do not fit in int32")
    _write_vecs(path, x, "<i4")


def write_text_lines(path, lines):
    """One item per line, UTF-8 (atomically).  Items must not contain a
    newline: that would shift every later line."""
    for i, s in enumerate(lines):
        if "\n" in s or "\r" in s:
            raise ValueError(f"{path}: item {i} contains a line break: {s!r}")
    data = ("\n".join(lines) + "\n").encode("utf-8")
    _atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# --------------------------------------------------------------------------

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """An IDX array (gzipped if the name ends in .gz) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic)")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{path}: unsupported IDX type 0x{code:02x} or rank {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[code])
    need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != need:
        raise DataError(f"{path}: shape {shape} needs {need} bytes of data, "
                        f"file has {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------

def sha256_file(path, chunk=1 << 22):
    """Hex SHA-256 of a file's contents."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()
