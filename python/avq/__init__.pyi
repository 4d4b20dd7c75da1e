# Type stub of the avq package (the compiled core avq._avq is re-exported
# here; docstrings are on the real objects: help(avq.Index.search)).
import os
from typing import (Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, TypedDict,
                    Union)

import numpy as np
import numpy.typing as npt

__version__: str
VERSION_NUMBER: int
METRICS: Tuple[str, str, str]
METRIC_ALIASES: Dict[str, str]

# any name of METRIC_ALIASES, in any case (so a plain str is accepted too)
Metric = Union[Literal["dot_product", "squared_l2", "cosine", "ip", "dot", "inner_product", "mips",
                       "l2", "euclidean", "sqeuclidean", "cos", "angular"], str]
ArrayLike = npt.ArrayLike
PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
Progress = Optional[Callable[[str, int, int], Any]]
Ids = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]
# ids: an int, or a 1-D integer array / sequence of ints (floats and bools are refused)
IdsLike = Union[int, np.integer[Any], Sequence[int], npt.NDArray[np.integer[Any]]]
Reorder = Optional[Literal["float", "float32", "float16", "int8", "none"]]
# tags are ints in [0, 2**32)
TagList = Union[Sequence[int], npt.NDArray[np.integer[Any]]]
# the tags of n rows: one list (or None) per row, a 2-D (n, t) int array, or a
# CSR pair (offsets: n + 1 ints, tags) -- a tuple of two is always read as CSR
RowTags = Union[
    Sequence[Optional[TagList]],
    npt.NDArray[np.integer[Any]],
    Tuple[TagList, TagList],
]
# ids to allow or deny: a sequence, set or 1-D integer array (not a single int)
IdSet = Union[Sequence[int], "set[int]", "frozenset[int]", npt.NDArray[np.integer[Any]]]
Keep = Callable[[int], Any]   # keep(id) -> truthy to allow
FilterLike = Union["Filter", Keep, IdSet]

MAX_TAGS_PER_VECTOR: int   # 1024
MAX_FILTER_TAGS: int       # 4096

class Error(Exception): ...
class FormatError(Error): ...

class IndexStats(TypedDict):
    live: int
    dead: int
    leaves: int
    empty_leaves: int
    min_leaf: int
    max_leaf: int
    mean_leaf: float
    leaf_cv: float
    max_leaf_dead: float
    memory_bytes: int
    next_id: int
    tagged: int
    tag_postings: int
    distinct_tags: int
    spilled: int   # live second copies (spill=True): = live, else 0

class Filter:
    @classmethod
    def allow_ids(cls, ids: IdSet, /) -> "Filter": ...
    @classmethod
    def deny_ids(cls, ids: IdSet, /) -> "Filter": ...
    @classmethod
    def tags_any(cls, tags: TagList, /) -> "Filter": ...
    @classmethod
    def tags_all(cls, tags: TagList, /) -> "Filter": ...
    @classmethod
    def callback(cls, keep: Keep, /) -> "Filter": ...
    @property
    def kind(self) -> Literal["allow_ids", "deny_ids", "tags_any", "tags_all", "callback"]: ...
    @property
    def size(self) -> Optional[int]: ...
    @property
    def keep(self) -> Optional[Keep]: ...

class Quantizer:
    @classmethod
    def train(
        cls,
        data: ArrayLike,
        metric: Metric = "dot_product",
        *,
        num_leaves: int = 0,
        training_sample: int = 0,
        kmeans_iterations: int = 12,
        spherical: Optional[bool] = None,
        avq_center_eta: float = ...,
        dims_per_block: int = 2,
        bits: int = 4,
        threshold: Optional[float] = ...,
        eta: float = 0.0,
        reorder: Reorder = "float",
        brute_force_below: int = 20000,
        threads: Optional[int] = None,
        seed: int = 42,
        progress: Progress = None,
        threshold_kind: Literal["auto", "relative", "absolute"] = "auto",
        weight: str = "step",
        int8_aware: bool = False,
        leaf_spread_z: float | Literal["auto"] | None = "auto",
        spill: bool | Literal[0, 1] = False,
        spill_lambda: Optional[float] = 1.0,
    ) -> "Quantizer": ...
    @classmethod
    def load(cls, path: PathLike) -> "Quantizer": ...
    def save(self, path: PathLike) -> None: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> Literal["dot_product", "squared_l2", "cosine"]: ...
    @property
    def num_leaves(self) -> int: ...

class Index:
    def __init__(self, quantizer: Quantizer) -> None: ...
    @classmethod
    def create(cls, quantizer: Quantizer) -> "Index": ...
    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview]) -> "Index": ...
    @classmethod
    def build(
        cls,
        data: ArrayLike,
        metric: Metric = "dot_product",
        *,
        num_leaves: int = 0,
        training_sample: int = 0,
        kmeans_iterations: int = 12,
        spherical: Optional[bool] = None,
        avq_center_eta: float = ...,
        dims_per_block: int = 2,
        bits: int = 4,
        threshold: Optional[float] = ...,
        eta: float = 0.0,
        reorder: Reorder = "float",
        brute_force_below: int = 20000,
        threads: Optional[int] = None,
        seed: int = 42,
        progress: Progress = None,
        threshold_kind: Literal["auto", "relative", "absolute"] = "auto",
        weight: str = "step",
        int8_aware: bool = False,
        leaf_spread_z: float | Literal["auto"] | None = "auto",
        spill: bool | Literal[0, 1] = False,
        spill_lambda: Optional[float] = 1.0,
        tags: Optional[RowTags] = None,
    ) -> "Index": ...
    # q of shape (dim,) gives results of shape (k,); q of shape (1, dim) gives (1, k).
    # At most one of filter / deny / tags_any / tags_all.
    def search(
        self,
        q: ArrayLike,
        k: int = 10,
        leaves_to_search: Optional[int] = None,
        pre_reorder: Optional[int] = None,
        *,
        filter: Optional[FilterLike] = None,
        deny: Optional[IdSet] = None,
        tags_any: Optional[TagList] = None,
        tags_all: Optional[TagList] = None,
        filter_min_scanned: Optional[int] = None,
        filter_exact_below: Optional[int] = None,
    ) -> Tuple[Ids, Scores]: ...
    # filters: one filter (or None) per query, instead of the four one-for-all keywords
    def search_batched(
        self,
        queries: ArrayLike,
        k: int = 10,
        leaves_to_search: Optional[int] = None,
        pre_reorder: Optional[int] = None,
        threads: Optional[int] = None,
        *,
        filter: Optional[FilterLike] = None,
        deny: Optional[IdSet] = None,
        tags_any: Optional[TagList] = None,
        tags_all: Optional[TagList] = None,
        filter_min_scanned: Optional[int] = None,
        filter_exact_below: Optional[int] = None,
        filters: Optional[Sequence[Optional[FilterLike]]] = None,
    ) -> Tuple[Ids, Scores]: ...
    def save(self, path: PathLike) -> None: ...
    def add(self, vectors: ArrayLike, ids: Optional[IdsLike] = None,
            threads: Optional[int] = 0, *, tags: Optional[RowTags] = None) -> Ids: ...
    def upsert(self, ids: IdsLike, vectors: ArrayLike, threads: Optional[int] = 0, *,
               tags: Optional[RowTags] = None) -> int: ...
    # one int id: tags is that vector's one list of tags
    def set_tags(self, ids: IdsLike, tags: Union[RowTags, TagList], /) -> None: ...
    def get_tags(self, id: int, /) -> List[int]: ...
    def tag_count(self, tag: int, /) -> int: ...
    def remove(self, ids: IdsLike, /) -> int: ...
    def compact(self, min_dead_fraction: float = 0.0) -> int: ...
    def set_compact_threshold(self, fraction: float, /) -> None: ...
    # ids 1-D gives (n, dim); one int id gives (dim,)
    def get(self, ids: IdsLike, /) -> Vectors: ...
    def stats(self) -> IndexStats: ...
    def tune(
        self,
        queries: ArrayLike,
        target_recall: float = 0.9,
        gt: Optional[ArrayLike] = None,
        *,
        k: int = 10,
        max_queries: Optional[int] = 2000,
        seed: Optional[int] = None,
        runs: int = 3,
        threads: Optional[int] = None,
        progress: Progress = None,
    ) -> Dict[str, Any]: ...
    def retrain(
        self,
        *,
        num_leaves: int = ...,
        training_sample: int = ...,
        kmeans_iterations: int = ...,
        spherical: Optional[bool] = ...,
        avq_center_eta: float = ...,
        dims_per_block: int = ...,
        bits: int = ...,
        threshold: Optional[float] = ...,
        eta: float = ...,
        reorder: Reorder = ...,
        brute_force_below: int = ...,
        threads: Optional[int] = ...,
        seed: int = ...,
        progress: Progress = None,
        threshold_kind: Literal["auto", "relative", "absolute"] = ...,
        weight: str = ...,
        int8_aware: bool = ...,
        leaf_spread_z: float | Literal["auto"] | None = ...,
        spill: bool | Literal[0, 1] = ...,
        spill_lambda: Optional[float] = ...,
    ) -> "Index": ...
    def to_bytes(self) -> bytes: ...
    def __reduce__(self) -> Tuple[Callable[[bytes], "Index"], Tuple[bytes]]: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Index": ...
    def __exit__(self, *exc_info: Any) -> None: ...
    @property
    def size(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> Literal["dot_product", "squared_l2", "cosine"]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def num_leaves(self) -> int: ...
    @property
    def isa(self) -> Literal["avx512", "avx2", "scalar"]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def mmap(self) -> bool: ...
    @property
    def quantizer(self) -> Quantizer: ...
    @property
    def default_search_params(self) -> Dict[str, int]: ...
    @property
    def build_params(self) -> Dict[str, Any]: ...

def load(path: PathLike, mmap: bool = False, verify_checksums: bool = True) -> Index: ...
def exact_search(
    base: ArrayLike,
    queries: ArrayLike,
    k: int = 10,
    metric: Metric = "dot_product",
    threads: Optional[int] = None,
    progress: Progress = None,
) -> Tuple[Ids, Scores]: ...
def isa() -> Literal["avx512", "avx2", "scalar"]: ...
def default_threads() -> int: ...
def parse_metric(name: str) -> Literal["dot_product", "squared_l2", "cosine"]: ...
def recall(ids: ArrayLike, true_ids: ArrayLike, k: Optional[int] = None) -> float: ...
def progress_bar(file: Any = None) -> Callable[[str, int, int], None]: ...

def builder(
    db: ArrayLike, num_neighbors: int,
    distance_measure: Literal["dot_product", "squared_l2", "cosine"],
) -> "ScannBuilder": ...

class ScannBuilder:
    def __init__(
        self, db: ArrayLike, num_neighbors: int,
        distance_measure: Literal["dot_product", "squared_l2", "cosine"],
    ) -> None: ...
    def tree(
        self,
        num_leaves: int,
        num_leaves_to_search: int,
        training_sample_size: int = 100000,
        training_iterations: int = 12,
        spherical: Optional[bool] = None,
        avq: Optional[float] = None,
    ) -> "ScannBuilder": ...
    def score_ah(
        self,
        dimensions_per_block: int,
        anisotropic_quantization_threshold: Optional[float] = 0.2,
        training_sample_size: Optional[int] = None,
        hash_type: Literal["lut16", "lut256"] = "lut16",
    ) -> "ScannBuilder": ...
    def score_brute_force(self, quantize: bool = False) -> "ScannBuilder": ...
    def reorder(
        self, reordering_num_neighbors: int, quantize: Literal["float32", "float16", "int8"] = "float32"
    ) -> "ScannBuilder": ...
    def set_n_training_threads(self, threads: int) -> "ScannBuilder": ...
    def build_params(self) -> Dict[str, Any]: ...
    def build(self, *, seed: int = 42, progress: Progress = None) -> "ScannSearcher": ...

class ScannSearcher:
    def __init__(
        self,
        index: Index,
        num_neighbors: int = 10,
        num_leaves_to_search: Optional[int] = None,
        reordering_num_neighbors: Optional[int] = None,
    ) -> None: ...
    @property
    def index(self) -> Index: ...
    def search(
        self,
        q: ArrayLike,
        final_num_neighbors: Optional[int] = None,
        pre_reorder_num_neighbors: Optional[int] = None,
        leaves_to_search: Optional[int] = None,
    ) -> Tuple[Ids, Scores]: ...
    def search_batched(
        self,
        queries: ArrayLike,
        final_num_neighbors: Optional[int] = None,
        pre_reorder_num_neighbors: Optional[int] = None,
        leaves_to_search: Optional[int] = None,
    ) -> Tuple[Ids, Scores]: ...
    def search_batched_parallel(
        self,
        queries: ArrayLike,
        final_num_neighbors: Optional[int] = None,
        pre_reorder_num_neighbors: Optional[int] = None,
        leaves_to_search: Optional[int] = None,
        batch_size: int = 256,
    ) -> Tuple[Ids, Scores]: ...
    def set_num_threads(self, num_threads: int) -> None: ...
    def serialize(self, artifacts_dir: Union[str, "os.PathLike[str]"]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "ScannSearcher": ...
    def __exit__(self, *exc: Any) -> None: ...

def load_searcher(artifacts_dir: Union[str, "os.PathLike[str]"], mmap: bool = False) -> ScannSearcher: ...
