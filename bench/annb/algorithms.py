"""Algorithm wrappers with the shape of ann-benchmarks' BaseANN, for avq,
hnswlib and FAISS, so that one runner (run.py) measures all three the same
way.

Interface (as in ann-benchmarks): ``fit(X)`` builds the index on the train
set; ``set_query_arguments(*args)`` switches the search-time knobs;
``query(q, n)`` returns the ids of the n best neighbours of ONE query (the
latency protocol times each call); ``batch_query(X, n)`` searches many at
once and ``get_batch_results()`` returns them; ``get_memory_usage()`` is the
process RSS in kB (the runner subtracts the value before ``fit``);
``__str__`` names the configuration; ``done()`` frees the index.

The metric names are ann-benchmarks': 'angular' (cosine) and 'euclidean'.
Our own code; the interface follows ann-benchmarks' documented protocol.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def _import_avq():
    path = os.environ.get("AVQ_PYTHON_PATH", os.path.join(REPO, "build", "python"))
    if os.path.isdir(os.path.join(path, "avq")) and path not in sys.path:
        sys.path.insert(0, path)
    import avq
    return avq


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024.0


class BaseANN:
    """The ann-benchmarks algorithm interface."""

    name = "base"

    def fit(self, X):
        raise NotImplementedError

    def set_query_arguments(self, *args):
        pass

    def query(self, q, n):
        raise NotImplementedError

    def batch_query(self, X, n):
        self._batch = np.array([self.query(q, n) for q in X])

    def get_batch_results(self):
        return self._batch

    def get_memory_usage(self):
        return rss_kb()

    def done(self):
        pass

    def __str__(self):
        return self.name


class Avq(BaseANN):
    """avq: k-means leaves + anisotropic 4-bit PQ + exact re-ranking.

    Build args: num_leaves (0 = library default, ~sqrt(n)), threshold T
    (anisotropic; None = plain PQ).  Query args: leaves_to_search,
    pre_reorder."""

    def __init__(self, metric, num_leaves=0, threshold=0.2):
        self._avq = _import_avq()
        self._metric = {"angular": "cosine", "euclidean": "squared_l2",
                        "dot": "dot_product"}[metric]
        self._num_leaves = num_leaves
        self._threshold = threshold
        self._index = None
        self._leaves = self._pre = None
        self.name = f"avq(leaves={num_leaves or 'auto'},T={threshold})"

    def fit(self, X):
        self._index = self._avq.Index.build(X, self._metric, num_leaves=self._num_leaves,
                                            threshold=self._threshold)
        self.name = f"avq(leaves={self._index.num_leaves},T={self._threshold})"

    def set_query_arguments(self, leaves_to_search, pre_reorder):
        self._leaves = min(int(leaves_to_search), self._index.num_leaves)
        self._pre = int(pre_reorder)

    def query(self, q, n):
        return self._index.search(q, n, self._leaves, self._pre)[0]

    def batch_query(self, X, n):
        self._batch = self._index.search_batched(X, n, self._leaves, self._pre, threads=0)[0]

    def query_args_str(self):
        return f"leaves_to_search={self._leaves} pre_reorder={self._pre}"

    def done(self):
        if self._index is not None:
            self._index.close()


class Hnswlib(BaseANN):
    """hnswlib (Debian python3-hnswlib).  Build args: M, efConstruction.
    Query arg: ef.  Built on all cores, searched on one thread."""

    def __init__(self, metric, M=16, efConstruction=200):
        import hnswlib
        self._hnswlib = hnswlib
        self._space = {"angular": "cosine", "euclidean": "l2", "dot": "ip"}[metric]
        self._M, self._efc = M, efConstruction
        self._ef = None
        self.name = f"hnswlib(M={M},efC={efConstruction})"

    def fit(self, X):
        self._index = self._hnswlib.Index(space=self._space, dim=X.shape[1])
        self._index.init_index(max_elements=len(X), ef_construction=self._efc, M=self._M,
                               random_seed=100)
        self._index.add_items(np.ascontiguousarray(X, dtype=np.float32),
                              np.arange(len(X)), num_threads=os.cpu_count() or 1)
        self._index.set_num_threads(1)

    def set_query_arguments(self, ef):
        self._ef = int(ef)
        self._index.set_ef(self._ef)

    def query(self, q, n):
        return self._index.knn_query(q, k=n, num_threads=1)[0][0]

    def batch_query(self, X, n):
        self._batch = self._index.knn_query(X, k=n, num_threads=os.cpu_count() or 1)[0]

    def query_args_str(self):
        return f"ef={self._ef}"

    def done(self):
        self._index = None


class FaissIVFPQfs(BaseANN):
    """FAISS IVF{nlist},PQ{m}x4fs + exact refinement (RFlat), the FAISS
    counterpart of avq's partition + 4-bit fast-scan PQ + re-ranking.
    Build args: nlist, m.  Query args: nprobe, k_factor (candidates refined
    = k_factor * n).  Debian's python3-faiss is a generic build (no AVX2
    fast-scan kernels): these are not FAISS's best numbers."""

    def __init__(self, metric, nlist=2048, m=50):
        import faiss
        self._faiss = faiss
        self._metric = metric
        self._nlist, self._m = nlist, m
        self._nprobe = self._k_factor = None
        self.name = f"faiss(IVF{nlist},PQ{m}x4fs,RFlat)"

    def _prep(self, X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self._metric == "angular":
            X = X / np.maximum(np.linalg.norm(X, axis=-1, keepdims=True), 1e-30)
        return np.ascontiguousarray(X, dtype=np.float32)

    def fit(self, X):
        faiss = self._faiss
        metric = faiss.METRIC_L2 if self._metric == "euclidean" else faiss.METRIC_INNER_PRODUCT
        X = self._prep(X)
        faiss.omp_set_num_threads(os.cpu_count() or 1)
        self._index = faiss.index_factory(X.shape[1], f"IVF{self._nlist},PQ{self._m}x4fs,RFlat",
                                          metric)
        self._index.train(X)
        self._index.add(X)
        # keep self._index referenced: the downcast view does not own it
        self._ivf = faiss.downcast_index(self._index.base_index)
        faiss.omp_set_num_threads(1)

    def set_query_arguments(self, nprobe, k_factor):
        self._nprobe, self._k_factor = int(nprobe), float(k_factor)
        self._ivf.nprobe = self._nprobe
        self._index.k_factor = self._k_factor

    def query(self, q, n):
        return self._index.search(self._prep(q.reshape(1, -1)), n)[1][0]

    def batch_query(self, X, n):
        self._faiss.omp_set_num_threads(os.cpu_count() or 1)
        self._batch = self._index.search(self._prep(X), n)[1]
        self._faiss.omp_set_num_threads(1)

    def query_args_str(self):
        return f"nprobe={self._nprobe} k_factor={self._k_factor:g}"

    def done(self):
        self._ivf = None
        self._index = None


CONSTRUCTORS = {"Avq": Avq, "Hnswlib": Hnswlib, "FaissIVFPQfs": FaissIVFPQfs}


def library_note(name):
    """One line about the library build behind an algorithm, for the output."""
    if name == "FaissIVFPQfs":
        import faiss
        opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else "?"
        generic = "GENERIC" in opts
        return (f"FAISS {faiss.__version__} ({opts.strip()}): "
                + ("Debian's generic build, no AVX2/AVX-512 fast-scan kernels -- FAISS can be "
                   "faster when built for the CPU" if generic else "CPU-specific build"))
    if name == "Hnswlib":
        import hnswlib
        return f"hnswlib {getattr(hnswlib, '__version__', '(Debian python3-hnswlib)')}"
    if name == "Avq":
        avq = _import_avq()
        return f"avq {avq.__version__}, SIMD {avq.isa()}"
    return name
