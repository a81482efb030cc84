"""FAISS indexes over a gallery's unit vectors: exact inner product, or HNSW / IVF when large.

Scores are inner products of L2-normalised vectors, i.e. cosine similarities in [-1, 1]. Figures
below: ``benchmarks/gallery_search.py`` (one thread, dim 128, random unit vectors, probes at
cosine 0.75 to their template; results in ``benchmarks/results/gallery_search.json``).

* ``flat``: ``IndexIDMap2(IndexFlatIP)``, exact: it scans every vector (0.03 ms per query at 1k
  templates, 4 ms at 100k, 47 ms at 1M), supports ``remove_ids`` and keeps the stable int64
  ids of the SQLite rows.
* ``ivf``: ``IndexIVFFlat`` with ~sqrt(n) cells (spherical k-means on a sample), ids native,
  removable, built in ~9 s at 1M; it scans :func:`ivf_probes` cells, about 1/8 of the gallery:
  6 ms at 1M with recall@1 0.95 against exact search on these random vectors (0.985 with 1/4 of
  the cells, 15 ms); real embeddings, clustered by person, are easier.
* ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)``, the fastest queries (1.1 ms at 100k, recall@1 1.0)
  but slow to build (~70 s per 100k vectors on one thread, once: it is cached, and enrolments
  add to it). It cannot remove graph nodes: a removed vector is zeroed and its id skipped
  (:func:`apply_delta`); past :data:`MAX_DEAD` dead entries it is rebuilt from the vectors.
* ``auto``: ``flat`` below :data:`AUTO_APPROX_AT` vectors, ``hnsw`` from there on: at 1M an
  exact query (47 ms) costs as much as cutting and embedding the probe record, and HNSW keeps
  recall@1 at 1.0 where IVF needs a quarter of its cells for 0.98 on these vectors.

Approximate kinds give way to ``flat`` below :data:`APPROX_MIN` vectors, where exact search is
already sub-millisecond and IVF could not be trained.

The index is always derived from the SQLite store (the source of truth); an approximate one may
be cached on disk in a small container (:func:`dump` / :func:`load`): a JSON header that tags the
gallery generation it was built from and a sha256 of the FAISS bytes, so a stale, foreign or
damaged cache is simply rebuilt, never searched. Nothing here unpickles anything.

FAISS is imported lazily and always after ``torch`` (:func:`faiss_module`): with FAISS's OpenMP
runtime loaded first, torch's later one makes FAISS calls in forked processes hang.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from typing import Any

import numpy as np

KINDS = ("auto", "flat", "hnsw", "ivf")
#: ``auto`` switches from the exact index to HNSW at this many vectors (see the module doc)
AUTO_APPROX_AT = 1_000_000
#: below this many vectors an approximate kind gives way to the exact index: exact search is
#: already sub-millisecond there, and IVF could not be trained on so few vectors
APPROX_MIN = 10_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
#: IVF scans at least this many cells, and at least 1/IVF_SCAN_FRACTION of them
IVF_MIN_PROBES = 16
IVF_SCAN_FRACTION = 8
#: an IVF index whose lists grew this many times past its training size is rebuilt
IVF_REBUILD_GROWTH = 4
#: an HNSW index is rebuilt once this share of its entries are dead (removed, see apply_delta)
MAX_DEAD = 0.2
_MAGIC = b"ECGBIO-FAISS\x00\x01"


def faiss_module() -> Any:
    """``import faiss``, after ``torch`` so that both share one OpenMP runtime (see module doc).

    Not in a process that embeds with ONNX Runtime and has not imported torch
    (:func:`ecgbio.backends.torch_free`): a cold ``ecgbio identify`` would pay a second for a
    library it never uses (a torch imported later there may hang FAISS calls in forked children).
    """
    from ecgbio.backends import torch_free

    if not torch_free():
        with contextlib.suppress(ImportError):  # torch is a dependency; FAISS alone is still fine
            import torch  # noqa: F401  (load order only)
    import faiss

    return faiss


def resolve_kind(kind: str, n: int) -> str:
    """The kind actually built for ``n`` vectors: ``auto`` decides by size; tiny sets are exact."""
    if kind not in KINDS:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    if kind == "auto":
        return "hnsw" if n >= AUTO_APPROX_AT else "flat"
    if kind != "flat" and n < APPROX_MIN:
        return "flat"
    return kind


def build(vectors: np.ndarray, ids: np.ndarray, kind: str, seed: int = 0) -> Any:
    """A FAISS index of ``kind`` (``flat``, ``hnsw`` or ``ivf``; resolve ``auto`` first)."""
    faiss = faiss_module()
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = np.ascontiguousarray(ids, dtype=np.int64)
    n, dim = x.shape
    if kind == "flat":
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index = faiss.IndexIDMap2(inner)
    elif kind == "ivf":
        nlist = ivf_lists(n)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # centroids on the unit sphere, like the vectors
        sample = x
        if n > 64 * nlist:  # k-means on a sample: training cost, not accuracy, grows with n
            rng = np.random.default_rng(seed)
            sample = x[np.sort(rng.choice(n, 64 * nlist, replace=False))]
        index.train(sample)
    else:
        raise ValueError(f"cannot build an index of kind {kind!r}")
    configure(index)
    if n:
        index.add_with_ids(x, keys)
    return index


def ivf_lists(n: int) -> int:
    """IVF cells: about sqrt(n) (balances the coarse scan against the cells scanned)."""
    return int(min(65536, max(1, round(np.sqrt(max(n, 1))))))


def ivf_probes(nlist: int) -> int:
    """Cells an IVF search scans: about 1/8 of them (see the module doc for what it gives)."""
    return int(min(nlist, max(IVF_MIN_PROBES, -(-nlist // IVF_SCAN_FRACTION))))


def outgrown(index: Any) -> bool:
    """Whether an IVF index holds so many more vectors than it was trained for that its cells
    are overfull (searches slow down): rebuild it then."""
    faiss = faiss_module()
    return isinstance(index, faiss.IndexIVF) and index.ntotal > IVF_REBUILD_GROWTH * index.nlist**2


def configure(index: Any) -> None:
    """Search-time parameters (also reset after loading a cached index)."""
    faiss = faiss_module()
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    if isinstance(inner, faiss.IndexHNSW):
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = ivf_probes(index.nlist)


def search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` (scores, ids) per query; missing results have id -1 (and are dropped by callers)."""
    faiss = faiss_module()
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    k = max(1, min(int(k), int(index.ntotal)))
    params = None
    if k > 16 and is_hnsw(index):  # HNSW returns at most efSearch results: widen it
        inner = faiss.downcast_index(index.index)
        if k > inner.hnsw.efSearch:
            params = faiss.SearchParametersHNSW(efSearch=int(k))
    # FAISS parallelises over queries: one query gains nothing from more threads and pays the
    # OpenMP team start-up (measured: 8 ms instead of 0.06 ms at 2k vectors on 2 busy cores)
    threads = faiss.omp_get_max_threads() if len(q) == 1 else 1
    if threads > 1:
        faiss.omp_set_num_threads(1)
    try:
        return index.search(q, k, params=params) if params is not None else index.search(q, k)
    finally:
        if threads > 1:
            faiss.omp_set_num_threads(threads)


def apply_delta(
    index: Any, removed: np.ndarray, added_ids: np.ndarray, added_vectors: np.ndarray
) -> None:
    """Update ``index`` in place: remove ``removed`` ids, add the new vectors.

    HNSW cannot remove graph nodes, so its removed vectors are overwritten with zeros instead
    (:func:`scrub`): the biometric data leaves memory and every cache written afterwards, and
    the ids, which SQLite never hands out again, no longer map to anyone and are skipped at
    search time. Too many such dead entries and the caller rebuilds (:data:`MAX_DEAD`).
    """
    faiss = faiss_module()
    removed = np.ascontiguousarray(removed, dtype=np.int64)
    if removed.size:
        if is_hnsw(index):
            scrub(index, removed)
        else:
            index.remove_ids(faiss.IDSelectorBatch(removed))
    if len(added_ids):
        index.add_with_ids(
            np.ascontiguousarray(added_vectors, dtype=np.float32),
            np.ascontiguousarray(added_ids, dtype=np.int64),
        )


def scrub(index: Any, ids: np.ndarray) -> None:
    """Zero the stored vectors of ``ids`` in an ``IndexIDMap2(IndexHNSWFlat)``."""
    faiss = faiss_module()
    storage = faiss.downcast_index(faiss.downcast_index(index.index).storage)
    n, dim = int(storage.ntotal), int(storage.d)
    stored = faiss.rev_swig_ptr(storage.get_xb(), n * dim).reshape(n, dim)  # a view, no copy
    stored[np.flatnonzero(np.isin(faiss.vector_to_array(index.id_map), ids))] = 0.0


def is_hnsw(index: Any) -> bool:
    faiss = faiss_module()
    inner = faiss.downcast_index(index.index) if hasattr(index, "id_map") else index
    return isinstance(inner, faiss.IndexHNSW)


def dump(index: Any, tag: dict[str, Any]) -> bytes:
    """Serialise ``index`` with a header tagging what it was built from (no pickle)."""
    faiss = faiss_module()
    payload = faiss.serialize_index(index).tobytes()
    header = json.dumps(
        {**tag, "bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()},
        sort_keys=True,
    ).encode()
    return _MAGIC + struct.pack("<I", len(header)) + header + payload


def load(data: bytes, tag: dict[str, Any]) -> Any | None:
    """The cached index if ``data`` is intact and was built for exactly ``tag``; else None."""
    start = len(_MAGIC) + 4
    if len(data) < start or not data.startswith(_MAGIC):
        return None
    (size,) = struct.unpack("<I", data[len(_MAGIC) : start])
    try:
        header = json.loads(data[start : start + size])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    payload = memoryview(data)[start + size :]
    if not isinstance(header, dict) or any(header.get(k) != v for k, v in tag.items()):
        return None
    if header.get("bytes") != len(payload):
        return None
    if header.get("sha256") != hashlib.sha256(payload).hexdigest():
        return None
    faiss = faiss_module()
    try:
        index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
    except RuntimeError:
        return None
    configure(index)
    return index
