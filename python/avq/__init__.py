"""avq -- anisotropic vector quantization search (ScaNN's method) from Python.

Maximum inner product, cosine and squared-L2 nearest-neighbour search over
dense float vectors, with numpy arrays in and out.  The compiled core
(`avq._avq`, written against the CPython and NumPy C APIs) wraps the C
library `libavq` (include/avq.h, linked statically); this file adds the
pure-Python parts: the ScaNN-style builder, `recall`, and a progress bar.

Low level::

    import avq, numpy as np
    index = avq.Index.build(data, "cosine", num_leaves=2000)   # GIL released
    ids, scores = index.search(q, k=10, leaves_to_search=40, pre_reorder=100)
    ids, scores = index.search_batched(Q, k=10)                 # (nq, 10) each
    index.save("glove.avq")
    index = avq.load("glove.avq", mmap=True)

A living index (vectors added and removed while other threads search)::

    q = avq.Quantizer.train(sample, "cosine")        # leaves + codebook, no vectors
    index = avq.Index(q)                              # empty
    ids = index.add(vectors)                          # automatic ids 0..n-1 (int64)
    index.add(more, ids=[1000, 1001])                 # or your own
    index.upsert([3], new_vector[None])               # replace
    index.remove([1000, 5]); 7 in index; len(index); index.get([3])
    blob = pickle.dumps(index)                        # = index.to_bytes()

Filtered search and tags (each vector may carry a few uint32 tags)::

    index = avq.Index.build(data, "cosine", tags=[[3, 17], [], [5], ...])  # one list per row
    index.add(more, tags=(offsets, flat))             # CSR: row i = flat[offsets[i]:offsets[i+1]]
    ids, scores = index.search(q, k=10, tags_any=[3, 17])     # or tags_all=[...]
    ids, scores = index.search(q, k=10, filter=allowed_ids)   # deny=seen_ids
    ids, scores = index.search(q, k=10, filter=lambda i: i % 2 == 0)  # slow, general
    f = avq.Filter.allow_ids(big_id_array)            # build once, reuse
    ids, scores = index.search_batched(Q, k=10, filter=f)      # or filters=[f1, None, ...]
    index.set_tags([7], [[1, 2]]); index.get_tags(7); index.tag_count(1)

ScaNN style::

    searcher = (avq.builder(data, 10, "dot_product")
                .tree(num_leaves=2000, num_leaves_to_search=40, training_sample_size=250000)
                .score_ah(2, anisotropic_quantization_threshold=0.2)
                .reorder(100)
                .build())
    neighbors, distances = searcher.search_batched(Q)

Conventions (the same as the C library's):

* ids are int64: row numbers of the data an index was built from, or what
  add() assigned or was given; scores are float32.  'dot_product' and 'cosine' scores are similarities (larger
  is better), 'squared_l2' scores are squared distances (smaller is
  better).  Ties go to the lower id; missing results are id -1, score NaN.
* Inputs may be any array-like of real numbers: a C-contiguous float32
  ndarray is used without a copy, anything else is converted once.
* Errors: ValueError (bad values, shapes, parameters; a closed index),
  TypeError (not real numbers, wrong argument types), OSError subclasses
  (files), avq.FormatError (corrupt or foreign file), MemoryError; the
  message is the C library's.

See python/README.md for the details and for where the builder differs
from ScaNN.
"""

import json
import os
import sys

import numpy as np

from ._avq import (MAX_FILTER_TAGS, MAX_TAGS_PER_VECTOR, METRIC_ALIASES, VERSION_NUMBER, Error,
                   Filter, FormatError, Index, Quantizer, __version__, default_threads,
                   exact_search, isa, load, parse_metric)

__all__ = [
    "Index", "Quantizer", "Filter", "load", "exact_search", "recall", "isa", "Error", "FormatError",
    "builder", "ScannBuilder", "ScannSearcher", "load_searcher", "progress_bar",
    "METRICS", "METRIC_ALIASES", "parse_metric", "default_threads",
    "__version__", "VERSION_NUMBER", "MAX_TAGS_PER_VECTOR", "MAX_FILTER_TAGS",
]

#: The canonical metric names.  Every name in METRIC_ALIASES ({alias:
#: canonical}, the C library's one table: 'ip', 'dot', 'mips', 'l2',
#: 'euclidean', 'cos', 'angular', ...) is accepted wherever a metric is, in
#: any case; parse_metric(name) gives the canonical one.
METRICS = ("dot_product", "squared_l2", "cosine")


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

def recall(ids, true_ids, k=None):
    """Mean recall@k of search results against ground truth.

    ``ids``: (nq, >=k) found ids (or one row, 1-D); ``true_ids``: (nq, >=k)
    exact ids, e.g. from :func:`exact_search` or an ann-benchmarks
    ``neighbors`` dataset.  For every query, the fraction of the true top-k
    ids that appear among the first k found ids; the mean over queries is
    returned as a float in [0, 1].  ``k`` defaults to ``ids.shape[1]``.
    Padding ids (-1) never count as found.

    This is set-based recall: with exactly tied distances at rank k an
    equally good answer can count as a miss (ann-benchmarks compares
    distances with a small tolerance instead; bench/annb/run.py does both).
    """
    found = np.asarray(ids)
    truth = np.asarray(true_ids)
    if found.ndim == 1:
        found = found[None, :]
    if truth.ndim == 1:
        truth = truth[None, :]
    if found.ndim != 2 or truth.ndim != 2:
        raise ValueError("ids and true_ids must be 1-D or 2-D arrays")
    if found.shape[0] != truth.shape[0]:
        raise ValueError(f"ids has {found.shape[0]} rows but true_ids has {truth.shape[0]}")
    if k is None:
        k = found.shape[1]
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if found.shape[1] < k or truth.shape[1] < k:
        raise ValueError(f"need at least k={k} columns, got ids {found.shape[1]}, "
                         f"true_ids {truth.shape[1]}")
    nq = found.shape[0]
    if nq == 0:
        raise ValueError("no queries (0 rows)")
    if found.dtype.kind not in "iu" or truth.dtype.kind not in "iu":
        raise TypeError("ids and true_ids must be integer arrays")
    f = found[:, :k].astype(np.int64, copy=False)
    t = truth[:, :k].astype(np.int64, copy=False)
    hits = 0
    step = max(1, (1 << 22) // (k * k))        # bound the (rows, k, k) temporary
    for a in range(0, nq, step):
        fa, ta = f[a:a + step], t[a:a + step]
        match = (fa[:, :, None] == ta[:, None, :]) & (fa[:, :, None] >= 0)
        hits += int(match.any(axis=1).sum())
    return hits / float(nq * k)


# ---------------------------------------------------------------------------
# progress reporting
# ---------------------------------------------------------------------------

class _ProgressBar:
    """callable(stage, done, total): one tqdm bar per stage when tqdm is
    installed; else one self-overwriting line on a terminal (at most ~5
    updates a second), or one line per finished stage in a log file."""

    def __init__(self, file=None, delay=0.0):
        try:
            from tqdm import tqdm
        except ImportError:  # tqdm is optional
            tqdm = None
        self._tqdm = tqdm
        self._file = file
        self._delay = float(delay)       # nothing shown before the call has run this long
        self._t0 = None
        self._stage = None               # the stage being shown
        self._finished = None            # (stage, total) that last reported its end
        self._bar = None
        self._since = None               # end of the previous stage: this one's start
        self._shown = 0.0

    def __call__(self, stage, done, total):
        import time
        out = self._file or sys.stderr
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        if now - self._t0 < self._delay:
            return                       # short calls stay quiet
        if self._since is None:
            self._since = now
        if self._stage is None and self._finished == (stage, total) and done >= total:
            return                       # the same stage reporting its end again
        if stage != self._stage:
            self.close()
            self._stage, self._shown = stage, 0.0
            if self._tqdm is not None:
                self._bar = self._tqdm(total=total, desc=stage, file=out, leave=False)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()
        else:
            tty = getattr(out, "isatty", lambda: False)()
            if not (done >= total or (tty and now - self._shown > 0.2)):
                return
            self._shown = now
            pct = 100.0 * done / total if total else 100.0
            start = "\r" if tty else ""
            print(f"{start}avq: {stage:<10s} {done}/{total} ({pct:5.1f} %) "
                  f"{now - self._since:6.1f} s", end="\n" if done >= total else "", file=out,
                  flush=True)
        if done >= total:
            self._finished = (stage, total)
            self._since = now
            self.close(finished=True)

    def close(self, finished=False):
        """End the current stage's bar or line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._stage is not None and not finished and self._shown:
            print(file=self._file or sys.stderr, flush=True)      # end a cut-off line
        self._stage = None


def progress_bar(file=None):
    """A ready-made ``progress`` callback for :meth:`Index.build`,
    :func:`exact_search` and :meth:`ScannBuilder.build`: one tqdm bar per
    stage when tqdm is installed, else a self-overwriting text line on
    ``file`` (default stderr).

    Any callable ``progress(stage: str, done: int, total: int)`` works too,
    e.g. ``lambda stage, done, total: bar.update(...)``; its return value is
    ignored (tqdm's ``update`` returns a bool), and raising an exception from
    it cancels the operation, which then re-raises that exception.
    """
    return _ProgressBar(file)


#: Seconds a build runs before the default progress bar appears.
_PROGRESS_DELAY = 3.0


def _default_progress():
    """The progress callback of a build given no ``progress=``: a bar on
    stderr when stderr is a terminal, shown once the build has run
    _PROGRESS_DELAY seconds (so quick builds print nothing); None when
    stderr is not a terminal (logs, pipes, notebooks' captured output).
    Pass ``progress=None`` to build silently anyway."""
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):      # replaced or closed stderr
        tty = False
    return _ProgressBar(delay=_PROGRESS_DELAY) if tty else None


# ---------------------------------------------------------------------------
# ScaNN-style builder
# ---------------------------------------------------------------------------


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class _DefaultThreshold(float):
    """score_ah's default T (0.2, shown as such in its signature), told apart
    from an explicit 0.2 by identity: squared_l2 drops the default but
    refuses a threshold it was given, which it could not honour."""

    __slots__ = ()


_AH_DEFAULT_T = _DefaultThreshold(0.2)


def builder(db, num_neighbors, distance_measure):
    """Start a ScaNN-style build: ``avq.builder(db, num_neighbors,
    distance_measure).tree(...).score_ah(...).reorder(...).build()``.

    ``db``: (n, dim) array-like of real numbers (converted to float32 once
    at build time); ``num_neighbors``: the default number of results of the
    searcher (ScaNN's ``final_num_neighbors``); ``distance_measure``:
    ``'dot_product'`` or ``'squared_l2'`` as in ScaNN, or ``'cosine'`` (an
    avq addition: vectors and queries are normalised for you) -- or any
    alias of :data:`METRIC_ALIASES` (``'angular'``, ``'dot'``, ...), in any
    case.
    """
    return ScannBuilder(db, num_neighbors, distance_measure)


class ScannBuilder:
    """The configuration of a ScaNN-style searcher; see :func:`builder`.

    Every configuring method returns the builder itself so calls chain.
    Parameter names and meanings follow ScaNN's ``ScannBuilder`` where avq
    has the same knob; python/README.md lists the differences.
    """

    def __init__(self, db, num_neighbors, distance_measure):
        if not isinstance(distance_measure, str):
            raise TypeError("distance_measure must be a str")
        try:
            metric = parse_metric(distance_measure)
        except ValueError as e:
            raise ValueError(f"distance_measure: {e}") from None
        self._db = db
        self._k = _positive_int(num_neighbors, "num_neighbors")
        self._metric = metric
        self._tree = None
        self._scoring = None
        self._reorder = None
        self._threads = 0

    def tree(self, num_leaves, num_leaves_to_search, training_sample_size=100000,
             training_iterations=12, spherical=None, avq=None):
        """Partition the data into ``num_leaves`` k-means leaves and scan
        ``num_leaves_to_search`` of them per query (ScaNN's ``tree``).

        ``training_sample_size``: rows sampled to train the leaf centers
        (and, in avq, the PQ codebooks too); ``training_iterations``:
        k-means iterations; ``spherical``: unit-norm centers (None = the
        library default: True for cosine and dot_product); ``avq``:
        anisotropic leaf centers with this eta (ScaNN's ``avq`` argument;
        dot_product/cosine only; passed on as ``avq_center_eta``; None =
        the library default: 2.5 for dot_product and cosine -- unlike
        ScaNN, whose default is off; pass 0 for none).
        """
        num_leaves = _positive_int(num_leaves, "num_leaves")
        # (more than num_leaves means all of them: the search clamps it)
        num_leaves_to_search = _positive_int(num_leaves_to_search, "num_leaves_to_search")
        self._tree = {
            "num_leaves": num_leaves,
            "num_leaves_to_search": num_leaves_to_search,
            "training_sample_size": _positive_int(training_sample_size, "training_sample_size"),
            "training_iterations": _positive_int(training_iterations, "training_iterations"),
            "spherical": None if spherical is None else bool(spherical),
            "avq": None if avq is None else float(avq),
        }
        return self

    def score_ah(self, dimensions_per_block, anisotropic_quantization_threshold=_AH_DEFAULT_T,
                 training_sample_size=None, hash_type="lut16"):
        """Score candidates with anisotropic product quantization
        ("asymmetric hashing", ScaNN's ``score_ah``).

        ``dimensions_per_block``: dimensions per 4-bit code;
        ``anisotropic_quantization_threshold``: the threshold T from which
        the anisotropic weight eta is derived (default 0.2 -- ScaNN's
        default is NaN; pass ``float('nan')`` or None for plain
        reconstruction-loss PQ; squared_l2 has no anisotropic loss, so
        there the default is left out and any other value but None/NaN
        raises ValueError);
        ``training_sample_size``: rows to train the codebooks (avq shares
        one sample size with ``tree``); ``hash_type``: ``'lut16'`` (4-bit
        codes, SIMD fast scan) or ``'lut256'`` (8-bit codes).
        """
        dims = _positive_int(dimensions_per_block, "dimensions_per_block")
        t = anisotropic_quantization_threshold
        if self._metric == "squared_l2" and t is _AH_DEFAULT_T:
            t = None  # the default is for inner products: L2 takes plain PQ
        if t is not None:
            t = float(t)
            if t != t:
                t = None
            elif t < 0:
                raise ValueError(f"anisotropic_quantization_threshold must be >= 0 or NaN, got {t}")
            elif self._metric == "squared_l2":
                raise ValueError(f"anisotropic_quantization_threshold={t}: squared_l2 has no "
                                 "anisotropic loss (its codes minimise the reconstruction "
                                 "error); leave it out or pass None")
        if hash_type not in ("lut16", "lut256"):
            raise ValueError(f"hash_type must be 'lut16' or 'lut256', got {hash_type!r}")
        self._scoring = {
            "kind": "ah",
            "dims_per_block": dims,
            "threshold": t,
            "bits": 4 if hash_type == "lut16" else 8,
            "training_sample_size": (None if training_sample_size is None else
                                     _positive_int(training_sample_size, "training_sample_size")),
        }
        return self

    def score_brute_force(self, quantize=False):
        """Score every vector exactly (ScaNN's ``score_brute_force``): the
        right choice below ~20k vectors.  ``quantize=True`` (ScaNN's int8
        brute force) is not supported.  Cannot be combined with ``tree``."""
        if quantize:
            raise ValueError("score_brute_force(quantize=True) is not supported by avq")
        self._scoring = {"kind": "brute"}
        return self

    def reorder(self, reordering_num_neighbors, quantize="float32"):
        """Re-score the best ``reordering_num_neighbors`` candidates of the
        quantized scan exactly before taking the final top-k (ScaNN's
        ``reorder``).  ``quantize``: ``'float32'`` (exact scores),
        ``'float16'`` (2 bytes per dimension, scores within ~0.05 %) or
        ``'int8'`` (1 byte per dimension, scores within ~0.5 %)."""
        n = _positive_int(reordering_num_neighbors, "reordering_num_neighbors")
        kinds = {"float32": "float", "float16": "float16", "int8": "int8"}
        if quantize not in kinds:
            raise ValueError(f"quantize must be 'float32', 'float16' or 'int8', got {quantize!r}")
        self._reorder = {"num_neighbors": n, "kind": kinds[quantize]}
        return self

    def set_n_training_threads(self, threads):
        """Worker threads for the build (0 = one per CPU, the default)."""
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 0:
            raise ValueError(f"threads must be an int >= 0, got {threads!r}")
        self._threads = int(threads)
        return self

    def build_params(self):
        """The keyword arguments this configuration passes to
        :meth:`Index.build` (a dict; useful to reproduce a build with the
        low-level API or the CLI)."""
        if self._scoring is None:
            raise ValueError("choose a scoring first: score_ah(...) or score_brute_force()")
        p = {"metric": self._metric, "threads": self._threads}
        if self._scoring["kind"] == "brute":
            if self._tree is not None:
                raise ValueError("avq cannot combine tree() with score_brute_force(): drop tree() "
                                 "for exact search, or use score_ah() + reorder()")
            # every point scored exactly, nothing trained
            p["brute_force_below"] = 2 ** 62
            return p
        s = self._scoring
        p.update(brute_force_below=0, dims_per_block=s["dims_per_block"], bits=s["bits"],
                 threshold=s["threshold"])
        sample = s["training_sample_size"]
        if self._tree is not None:
            t = self._tree
            if sample is not None and sample != t["training_sample_size"]:
                raise ValueError("avq uses one training sample for the tree and the codebooks: "
                                 "give score_ah the same training_sample_size as tree, or none")
            sample = t["training_sample_size"]
            p.update(num_leaves=t["num_leaves"], kmeans_iterations=t["training_iterations"],
                     spherical=t["spherical"])
            if t["avq"] is not None:
                p["avq_center_eta"] = t["avq"]
        else:
            p["num_leaves"] = 1
        if sample is not None:
            p["training_sample"] = sample
        p["reorder"] = self._reorder["kind"] if self._reorder else "none"
        return p

    def build(self, *, seed=42, progress=None):
        """Train and return a :class:`ScannSearcher`.  ``seed`` makes every
        sample reproducible; ``progress`` is as for :meth:`Index.build`
        (Ctrl-C cancels with KeyboardInterrupt)."""
        params = self.build_params()
        metric = params.pop("metric")
        index = Index.build(self._db, metric, seed=seed, progress=progress, **params)
        leaves = self._tree["num_leaves_to_search"] if self._tree else None
        pre = self._reorder["num_neighbors"] if self._reorder else None
        return ScannSearcher(index, self._k, leaves, pre)


class ScannSearcher:
    """A built index with ScaNN's search-time names and defaults.

    ``search`` / ``search_batched`` return ``(neighbors, distances)`` like
    ScaNN's searcher -- int64 ids and float32 scores (ScaNN returns uint32
    ids).  The defaults come from the builder: ``num_neighbors``,
    ``tree(num_leaves_to_search=...)`` and ``reorder(n)``.
    """

    def __init__(self, index, num_neighbors=10, num_leaves_to_search=None,
                 reordering_num_neighbors=None):
        if not isinstance(index, Index):
            raise TypeError("index must be an avq.Index")
        self._index = index
        self._k = _positive_int(num_neighbors, "num_neighbors")
        self._leaves = num_leaves_to_search
        self._pre = reordering_num_neighbors
        self._threads = 0

    @property
    def index(self):
        """The underlying :class:`avq.Index`."""
        return self._index

    def _args(self, final_num_neighbors, pre_reorder_num_neighbors, leaves_to_search):
        k = self._k if final_num_neighbors is None else final_num_neighbors
        # (a pre_reorder below k is raised to k by the library, as in ScaNN)
        pre = self._pre if pre_reorder_num_neighbors is None else pre_reorder_num_neighbors
        leaves = self._leaves if leaves_to_search is None else leaves_to_search
        return k, leaves, pre

    def search(self, q, final_num_neighbors=None, pre_reorder_num_neighbors=None,
               leaves_to_search=None):
        """(neighbors, distances) of one query: int64 and float32 arrays of
        shape (final_num_neighbors,).  None = the builder's setting."""
        k, leaves, pre = self._args(final_num_neighbors, pre_reorder_num_neighbors,
                                    leaves_to_search)
        return self._index.search(q, k, leaves, pre)

    def search_batched(self, queries, final_num_neighbors=None, pre_reorder_num_neighbors=None,
                       leaves_to_search=None):
        """(neighbors, distances) of every row of ``queries``, shapes
        (nq, final_num_neighbors), on ONE thread as ScaNN's
        ``search_batched`` (use ``search_batched_parallel`` for all cores)."""
        k, leaves, pre = self._args(final_num_neighbors, pre_reorder_num_neighbors,
                                    leaves_to_search)
        return self._index.search_batched(queries, k, leaves, pre, threads=1)

    def search_batched_parallel(self, queries, final_num_neighbors=None,
                                pre_reorder_num_neighbors=None, leaves_to_search=None,
                                batch_size=256):
        """As ``search_batched`` on ``set_num_threads`` workers (default:
        one per CPU).  ``batch_size`` is accepted for ScaNN compatibility
        and has no effect (work is balanced dynamically); results are
        identical to ``search_batched``."""
        k, leaves, pre = self._args(final_num_neighbors, pre_reorder_num_neighbors,
                                    leaves_to_search)
        return self._index.search_batched(queries, k, leaves, pre, threads=self._threads)

    def set_num_threads(self, num_threads):
        """Workers of ``search_batched_parallel`` (0 = one per CPU)."""
        if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) \
                or num_threads < 0:
            raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
        self._threads = int(num_threads)

    def serialize(self, artifacts_dir):
        """Save into directory ``artifacts_dir`` (created if needed): the
        index as ``index.avq`` and the search defaults as ``searcher.json``.
        Load it back with :func:`avq.load_searcher`."""
        os.makedirs(artifacts_dir, exist_ok=True)
        self._index.save(os.path.join(artifacts_dir, "index.avq"))
        meta = {"format": "avq-searcher", "version": 1, "num_neighbors": self._k,
                "num_leaves_to_search": self._leaves, "reordering_num_neighbors": self._pre}
        tmp = os.path.join(artifacts_dir, "searcher.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        os.replace(tmp, os.path.join(artifacts_dir, "searcher.json"))

    def close(self):
        """Close the underlying index (see :meth:`Index.close`)."""
        self._index.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return (f"<avq.ScannSearcher k={self._k} leaves_to_search={self._leaves} "
                f"pre_reorder={self._pre} {self._index!r}>")


def load_searcher(artifacts_dir, mmap=False):
    """Load a searcher written by :meth:`ScannSearcher.serialize` (ScaNN's
    ``scann_ops_pybind.load_searcher``).  ``mmap`` as for :func:`avq.load`."""
    with open(os.path.join(artifacts_dir, "searcher.json"), encoding="utf-8") as f:
        try:
            meta = json.load(f)
        except ValueError as e:
            raise FormatError(f"{artifacts_dir}/searcher.json: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != "avq-searcher":
        raise FormatError(f"{artifacts_dir}/searcher.json is not an avq searcher description")
    if meta.get("version") != 1:
        raise FormatError(f"{artifacts_dir}/searcher.json: version {meta.get('version')!r}, "
                          "this avq reads version 1")
    index = load(os.path.join(artifacts_dir, "index.avq"), mmap=mmap)
    return ScannSearcher(index, meta["num_neighbors"], meta["num_leaves_to_search"],
                         meta["reordering_num_neighbors"])
