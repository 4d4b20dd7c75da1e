"""avq.distributed -- a sharded avq index across the ranks of an MPI job.

The Python side of avq-mpi (mpi/avq_mpi.c, doc/DESIGN.md "Sharding"), on
mpi4py.  Under ``mpirun -np N python3 job.py`` every rank passes ITS part
of the data; one quantizer is trained on rank 0 (on a sample every rank
draws from its own rows) and broadcast, every vector goes to shard
``shard_of(id, shards)`` -- the same splitmix64 hash as avq-mpi -- and
shard s lives on rank ``s % N``.  A search broadcasts the queries, every
rank exports its shards' best quantized candidates with their exact
scores (``avq_index_search_candidates``), and rank 0 merges them with
``avq_merge_candidates``: the ids AND scores of one ``avq.Index`` over all
the data made from the same quantizer (with its vectors added in ascending
id order).

    from mpi4py import MPI
    import avq.distributed as dist
    index = dist.ShardedIndex.build(my_rows, metric="cosine")   # ids: global row numbers
    ids, scores = index.search(queries if MPI.COMM_WORLD.rank == 0 else None, k=10)
    # rank 0 gets (nq, k) arrays, the other ranks None

The shards are avq.Index objects (``index.shards``: {shard number: Index}
of this rank).  The candidate export and the merge are C functions that the
compiled module does not wrap; they are called through ctypes in the
shared library libavq.so.0 ($AVQ_LIBRARY, else beside the package in a
build tree, else the system's), into which each shard is copied once
(``Index.to_bytes`` -> ``avq_index_load_bytes``) on its first search: a
searched shard takes its memory twice.  Call ``close()`` to release them.
"""

import ctypes
import ctypes.util
import os

import numpy as np

import avq

__all__ = ["shard_of", "ShardedIndex", "merge_topk"]

_M64 = (1 << 64) - 1


def shard_of(ids, shards):
    """The shard of each id: splitmix64's finaliser of the id (as uint64),
    mod shards -- exactly avq-mpi's routing."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def _in_sample(rows, seed, p):
    """Row numbers in the training sample (avq-mpi's rule: independent of
    the number of ranks)."""
    if p >= 1.0:
        return np.ones(len(rows), dtype=bool)

    def mix(z):
        with np.errstate(over="ignore"):
            z = z + np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            return z ^ (z >> np.uint64(31))

    h = mix(np.uint64(seed) ^ mix(np.asarray(rows, dtype=np.uint64)))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0) < p


# ---- the C functions, through ctypes ---------------------------------------

class _SearchParams(ctypes.Structure):
    # avq_search_params as of 0.3; struct_size tells a newer library where
    # this struct ends (its later fields take their defaults)
    _fields_ = [("struct_size", ctypes.c_size_t), ("k", ctypes.c_size_t),
                ("leaves_to_search", ctypes.c_size_t), ("pre_reorder", ctypes.c_size_t),
                ("filter", ctypes.c_void_p), ("filter_min_scanned", ctypes.c_size_t),
                ("filter_exact_below", ctypes.c_size_t)]


CANDIDATE = np.dtype([("id", "<i8"), ("approx", "<f4"), ("exact", "<f4"), ("leaf", "<u4"),
                      ("reserved", "<u4")])
_METRICS = {"dot_product": 0, "squared_l2": 1, "cosine": 2}
_ALIASES = {"dot": 0, "ip": 0, "l2": 1, "cos": 2, "angular": 2}
_lib = None


def _metric_code(metric):
    name = str(metric).lower()
    if name in _METRICS:
        return _METRICS[name]
    if name in _ALIASES:
        return _ALIASES[name]
    raise ValueError(f"unknown metric {metric!r}")


def _library():
    global _lib
    if _lib is not None:
        return _lib
    here = os.path.dirname(os.path.abspath(avq.__file__))
    tries = [os.environ.get("AVQ_LIBRARY"),
             os.path.join(here, "..", "..", "libavq.so.0"),
             os.path.join(here, "..", "..", "build", "libavq.so.0"),
             ctypes.util.find_library("avq")]
    errors = []
    for path in tries:
        if not path:
            continue
        try:
            lib = ctypes.CDLL(path)
            lib.avq_index_search_candidates  # noqa: B018 -- present in 0.4 and later
        except (OSError, AttributeError) as exc:
            errors.append(f"{path}: {exc}")
            continue
        p, sz = ctypes.c_void_p, ctypes.c_size_t
        lib.avq_last_error.restype = ctypes.c_char_p
        lib.avq_index_load_bytes.argtypes = [p, sz, ctypes.POINTER(p)]
        lib.avq_index_free.argtypes = [p]
        lib.avq_index_num_leaves.argtypes = [p]
        lib.avq_index_num_leaves.restype = sz
        lib.avq_search_params_init_sized.argtypes = [p, sz]
        lib.avq_index_candidate_count.argtypes = [p, p, ctypes.POINTER(sz)]
        lib.avq_index_leaf_live.argtypes = [p, p]
        lib.avq_index_search_candidates.argtypes = [p, p, sz, p, p, ctypes.c_int, p, p, p]
        lib.avq_merge_candidates.argtypes = [ctypes.c_int, sz, sz, p, p, sz, sz, p, p, p]
        lib.avq_merge_topk.argtypes = [ctypes.c_int, sz, sz, p, p, p, sz, p, p]
        _lib = lib
        return lib
    raise avq.Error("avq.distributed needs libavq.so.0 with avq_index_search_candidates "
                    "(set AVQ_LIBRARY): " + "; ".join(errors or ["not found"]))


def _check(status, what):
    if status != 0:
        raise avq.Error(f"{what}: {_library().avq_last_error().decode(errors='replace')}")


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def merge_topk(metric, id_lists, score_lists, k):
    """avq_merge_topk for one process: the best k of per-shard result rows.
    id_lists / score_lists: sequences of (nq, w_i) arrays (each row best
    first, as every avq search returns it).  Returns (ids, scores), (nq, k)."""
    lib = _library()
    ids = [np.ascontiguousarray(a, dtype=np.int64) for a in id_lists]
    scs = [np.ascontiguousarray(a, dtype=np.float32) for a in score_lists]
    if not ids:
        raise ValueError("merge_topk: no lists")
    nq = ids[0].shape[0]
    for a, s in zip(ids, scs):
        if a.ndim != 2 or a.shape != s.shape or a.shape[0] != nq:
            raise ValueError("merge_topk: every list must be (nq, w) ids with scores alike")
    n = len(ids)
    widths = np.array([a.shape[1] for a in ids], dtype=np.uintp)
    id_ptrs = (ctypes.c_void_p * n)(*[a.ctypes.data for a in ids])
    sc_ptrs = (ctypes.c_void_p * n)(*[s.ctypes.data for s in scs])
    out_i = np.empty((nq, k), dtype=np.int64)
    out_s = np.empty((nq, k), dtype=np.float32)
    _check(lib.avq_merge_topk(_metric_code(metric), nq, n, id_ptrs, sc_ptrs, _ptr(widths), k,
                              _ptr(out_i), _ptr(out_s)), "merge_topk")
    return out_i, out_s


# ---- the sharded index -----------------------------------------------------

class ShardedIndex:
    """This rank's part of a sharded index: ``shards`` maps the shard numbers
    this rank serves (s % size == rank) to avq.Index objects, all created
    from ``quantizer``.  Collective methods must be called on every rank."""

    def __init__(self, quantizer, shards, num_shards, comm=None):
        from mpi4py import MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.quantizer = quantizer
        self.shards = dict(shards)
        self.num_shards = int(num_shards)
        self._c = {}

    @property
    def metric(self):
        return self.quantizer.metric

    @classmethod
    def build(cls, data, ids=None, metric="cosine", *, shards=None, comm=None,
              training_sample=100000, seed=42, threads=None, **train_params):
        """Collective.  data: this rank's rows (n_r, dim).  ids: their ids
        (default: global row numbers, ranks in order).  shards: number of
        shards (default: the number of ranks).  Training parameters go to
        avq.Quantizer.train; num_leaves defaults to sqrt(total rows) from
        100k rows on and brute_force_below follows the total, as avq-mpi
        does."""
        from mpi4py import MPI
        comm = comm if comm is not None else MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim != 2:
            raise ValueError("data must be (n, dim)")
        counts = comm.allgather(data.shape[0])
        dims = set(comm.allgather(data.shape[1]))
        if len(dims) != 1:
            raise ValueError(f"ranks have different dimensions: {sorted(dims)}")
        n, first = sum(counts), sum(counts[:rank])
        rows = np.arange(first, first + data.shape[0], dtype=np.int64)
        if ids is None:
            ids = rows
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (data.shape[0],):
            raise ValueError("ids must have one entry per row")
        S = int(shards) if shards else size
        p = 1.0 if n <= training_sample else training_sample / n
        sample = comm.gather(data[_in_sample(rows, seed, p)], root=0)
        blob = None
        if rank == 0:
            sample = np.concatenate(sample)
            params = dict(train_params)
            bfb = params.pop("brute_force_below", 20000)
            if "num_leaves" not in params and n >= 100000:
                params["num_leaves"] = int(min(round(np.sqrt(n)), len(sample) // 16))
            if n >= bfb and len(sample) < bfb:
                bfb = len(sample)
            q = avq.Quantizer.train(sample, metric, training_sample=len(sample),
                                    brute_force_below=bfb, seed=seed, threads=threads, **params)
            blob = avq.Index.create(q).to_bytes()
        blob = comm.bcast(blob, root=0)
        quantizer = avq.Index.from_bytes(blob).quantizer
        # route rows to the ranks serving their shards
        dest = shard_of(ids, S) % size
        send = [(data[dest == r], ids[dest == r]) for r in range(size)]
        got = comm.alltoall(send)
        mine = {}
        rows_all = np.concatenate([g[0] for g in got]) if got else np.empty((0, data.shape[1]))
        ids_all = np.concatenate([g[1] for g in got]) if got else np.empty(0, dtype=np.int64)
        sh = shard_of(ids_all, S)
        for s in range(rank, S, size):
            sel = sh == s
            order = np.argsort(ids_all[sel], kind="stable")  # ascending ids: see the top
            x = avq.Index.create(quantizer)
            if order.size:
                x.add(rows_all[sel][order], ids_all[sel][order], threads=threads or 0)
            mine[s] = x
        return cls(quantizer, mine, S, comm)

    def _c_index(self, s):
        if s not in self._c:
            lib = _library()
            blob = self.shards[s].to_bytes()
            h = ctypes.c_void_p()
            _check(lib.avq_index_load_bytes(blob, len(blob), ctypes.byref(h)), f"shard {s}")
            self._c[s] = h
        return self._c[s]

    def close(self):
        """Release the library copies of the shards (not collective)."""
        lib = _lib
        for h in self._c.values():
            lib.avq_index_free(h)
        self._c = {}

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def search(self, queries, k=10, leaves_to_search=0, pre_reorder=0, threads=0):
        """Collective.  queries: (nq, dim) on rank 0 (ignored elsewhere).
        Returns (ids, scores) of shape (nq, k) on rank 0, None on the other
        ranks: equal to one avq.Index over all the data made from the same
        quantizer."""
        lib = _library()
        comm = self.comm
        rank = comm.Get_rank()
        if rank == 0:
            queries = np.ascontiguousarray(queries, dtype=np.float32)
        queries = comm.bcast(queries if rank == 0 else None, root=0)
        nq = queries.shape[0]
        sp = _SearchParams()
        lib.avq_search_params_init_sized(ctypes.byref(sp), ctypes.sizeof(sp))
        sp.k, sp.leaves_to_search, sp.pre_reorder = k, leaves_to_search, pre_reorder
        R, L = 0, 0
        for s in self.shards:
            r = ctypes.c_size_t()
            _check(lib.avq_index_candidate_count(self._c_index(s), ctypes.byref(sp),
                                                 ctypes.byref(r)), f"shard {s}")
            R, L = r.value, lib.avq_index_num_leaves(self._c_index(s))
        R, L = comm.allreduce(R, op=_max()), comm.allreduce(L, op=_max())
        live = np.zeros(L, dtype=np.uintp)
        tmp = np.zeros(L, dtype=np.uintp)
        for s in self.shards:
            _check(lib.avq_index_leaf_live(self._c_index(s), _ptr(tmp)), f"shard {s}")
            live += tmp
        live = comm.allreduce(live)  # elementwise sum of numpy arrays
        live = np.ascontiguousarray(live, dtype=np.uintp)
        answers = []
        for s in sorted(self.shards):
            cand = np.zeros((nq, R), dtype=CANDIDATE)
            counts = np.zeros(nq, dtype=np.uintp)
            offsets = np.zeros(nq, dtype=np.float32)
            _check(lib.avq_index_search_candidates(self._c_index(s), _ptr(queries), nq,
                                                   ctypes.byref(sp), _ptr(live), threads,
                                                   _ptr(cand), _ptr(counts), _ptr(offsets)),
                   f"shard {s}")
            answers.append((cand, counts, offsets))
        gathered = comm.gather(answers, root=0)
        if rank != 0:
            return None
        parts = [a for g in gathered for a in g]
        n = len(parts)
        lists = (ctypes.c_void_p * n)(*[a[0].ctypes.data for a in parts])
        cnts = (ctypes.c_void_p * n)(*[a[1].ctypes.data for a in parts])
        offsets = parts[0][2] if parts else np.zeros(nq, dtype=np.float32)
        ids = np.empty((nq, k), dtype=np.int64)
        scores = np.empty((nq, k), dtype=np.float32)
        _check(lib.avq_merge_candidates(_metric_code(self.metric), nq, n, lists, cnts, R, k,
                                        _ptr(offsets), _ptr(ids), _ptr(scores)), "merge")
        return ids, scores

    def __len__(self):
        """Collective: vectors over all shards."""
        return self.comm.allreduce(sum(len(x) for x in self.shards.values()))


def _max():
    from mpi4py import MPI
    return MPI.MAX
