"""The search side of a gallery: a FAISS index derived from the store, kept current.

Why a piece of its own: the store is the truth and may change under us (another process enrols),
so every search first checks the store's generation (one tiny SQLite read) and uses an index
built for exactly that generation: the one in memory, else (approximate kinds only) the cache in
``index.faiss``, else one built from the stored vectors. An exact index rebuilds at memory speed,
so it is never cached; an approximate one is expensive to build, so our own writes carry it over
(new vectors added, removals applied where the kind can remove) instead of rebuilding it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.gallery import index as faiss_index
from ecgbio.gallery.store import GalleryStore
from ecgbio.io import atomic_open

INDEX_CACHE = "index.faiss"


@dataclass
class Searchable:
    """A FAISS index valid for one gallery generation, and how to map its ids to persons."""

    generation: int
    kind: str
    index: Any
    keys: np.ndarray  # FAISS ids of live entries (template ids), sorted
    owners: np.ndarray  # person id of each key
    names: dict[int, str]
    most: int  # most index entries of one person

    @property
    def dead(self) -> int:
        """Index entries whose ids no longer map to anyone (removed from an HNSW index)."""
        return max(0, int(self.index.ntotal) - len(self.keys))

    def person_of(self, ids: np.ndarray) -> np.ndarray:
        """Person ids of FAISS result ids (-1 for missing results)."""
        if not len(self.keys):
            return np.full(ids.shape, -1, np.int64)
        pos = np.clip(np.searchsorted(self.keys, ids), 0, len(self.keys) - 1)
        return np.where((ids >= 0) & (self.keys[pos] == ids), self.owners[pos], -1)


class Searcher:
    """Person-level top-k search over a :class:`GalleryStore`, always at its current generation."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store
        self._state: Searchable | None = None

    @property
    def cache(self) -> Path:
        return self.store.root / INDEX_CACHE

    def invalidate(self, drop_cache: bool = False) -> None:
        self._state = None
        if drop_cache:
            self.cache.unlink(missing_ok=True)

    def search(self, queries: np.ndarray, top_k: int) -> tuple[str, list[list[tuple[str, float]]]]:
        """(index kind used, per query the best ``top_k`` persons as (name, score), best first).

        A person's score is their best entry's: the max over their templates (``each``), or
        their mean template's (``mean``). Enough entries are fetched that ``top_k`` distinct
        persons are found: ``(top_k - 1) * most + 1``, where ``most`` is the most entries one
        person has, plus room for dead entries (removed from an HNSW index, see
        :func:`~ecgbio.gallery.index.apply_delta`), widened until enough live ones come back.
        """
        state = self.current()
        q = np.atleast_2d(np.asarray(queries, np.float32))
        total = int(state.index.ntotal)
        if total == 0 or not len(state.keys):
            return state.kind, [[] for _ in q]
        top_k = max(1, int(top_k))
        want = min(top_k, len(state.names))  # every enrolled person has >= 1 template
        fetch = min(total, (top_k - 1) * state.most + 1 + min(state.dead, 64))
        while True:
            scores, ids = faiss_index.search(state.index, q, fetch)
            out = [
                _best_persons(s, o, top_k)
                for s, o in zip(scores, state.person_of(ids), strict=True)
            ]
            if fetch >= total or all(len(row) >= want for row in out):
                break
            fetch = min(total, fetch * 4)
        names = state.names
        return state.kind, [[(names.get(o, f"#{o}"), v) for o, v in row.items()] for row in out]

    def current(self) -> Searchable:
        """The index for the current generation: in memory, from the cache, or built anew.

        An approximate index is looked up in the cache first, which needs only the ids (no
        vectors) from SQLite; an exact one is rebuilt from the vectors.
        """
        generation = self.store.generation()
        if self._state is not None and self._state.generation == generation:
            return self._state
        self.store.meta = self.store.read_meta()  # another process may have reconfigured it
        mode, wanted = self.store.meta["template_mode"], self.store.meta["index_kind"]
        index = None
        if self.cache.is_file():  # only approximate indexes are cached: flat ones skip this read
            snap = self.store.vectors(with_vectors=False)
            keys, owners, _, most = entries(snap.ids, snap.owners, None, mode)
            kind = faiss_index.resolve_kind(wanted, len(keys))
            if kind != "flat":
                index = faiss_index.load(self.cache.read_bytes(), self._tag(snap.generation, kind))
            if index is not None and index.ntotal - len(keys) > faiss_index.MAX_DEAD * index.ntotal:
                index = None  # too many dead entries: rebuild
        if index is None:
            snap = self.store.vectors()  # may be newer than the ids read above: recompute
            keys, owners, vectors, most = entries(snap.ids, snap.owners, snap.vectors, mode)
            kind = faiss_index.resolve_kind(wanted, len(keys))
            index = faiss_index.build(vectors, keys, kind)
            if kind != "flat":
                self._save(index, self._tag(snap.generation, kind), blocking=False)
        self._state = Searchable(snap.generation, kind, index, keys, owners, snap.names, most)
        return self._state

    def after_write(
        self,
        before: int,
        person: str,
        old_ids: list[int],
        removed: list[int],
        added: list[int],
        vectors: np.ndarray,
    ) -> None:
        """Carry an approximate index built at generation ``before`` over one write.

        Call it under the writer lock, right after the write's commit, with what the write did
        to ``person``: their template ids before it (``old_ids``), the ones it deleted
        (``removed``) and the ones it added (``added``, unit ``vectors``). An exact index is
        simply rebuilt on the next search.
        """
        state, self._state = self._state, None
        if state is not None and state.generation == before and state.kind != "flat":
            index = state.index
        elif self.cache.is_file():
            index = faiss_index.load(self.cache.read_bytes(), self._tag(before))
            if index is None:
                self.invalidate(drop_cache=True)
                return
        else:
            return
        if self.store.meta["template_mode"] == "each":
            drop, ids, vecs = np.array(removed, np.int64), np.array(added, np.int64), vectors
        else:  # one entry per person, keyed by their newest template id: a new key per change
            now_ids = sorted((set(old_ids) - set(removed)) | set(added))
            drop = np.array([max(old_ids)] if old_ids else [], np.int64)
            ids = np.array([now_ids[-1]] if now_ids else [], np.int64)
            vecs = np.zeros((0, int(self.store.meta["dim"])), np.float32)
            if now_ids:
                mine = self.store.vectors(person).vectors.astype(np.float64).sum(0)
                vecs = (mine / np.linalg.norm(mine)).astype(np.float32)[None]
        faiss_index.apply_delta(index, drop, ids, vecs)
        persons, templates, _ = self.store.counts()
        live = templates if self.store.meta["template_mode"] == "each" else persons
        dead = index.ntotal - live
        if faiss_index.outgrown(index) or dead > faiss_index.MAX_DEAD * index.ntotal:
            self.invalidate(drop_cache=True)  # rebuilt from the stored vectors on next search
            return
        kind = "hnsw" if faiss_index.is_hnsw(index) else "ivf"
        self._save(index, self._tag(self.store.generation(), kind), blocking=True)

    def _tag(self, generation: int, kind: str | None = None) -> dict[str, Any]:
        """What a cached index must have been built from (``kind`` None: any kind)."""
        meta = self.store.meta
        tag = {
            "uuid": meta["uuid"],
            "generation": generation,
            "template_mode": meta["template_mode"],
            "dim": meta["dim"],
        }
        return tag if kind is None else {**tag, "kind": kind}

    def _save(self, index: Any, tag: dict[str, Any], blocking: bool) -> None:
        """Write the cache under the writer lock, if the gallery is still at ``tag``'s generation.

        A reader does not wait for the lock (``blocking=False``): if a writer holds it, the
        cache would be stale by the time it was written anyway.
        """
        with self.store.locked(blocking=blocking) as held:
            if not held or self.store.generation() != tag["generation"]:
                return
            try:
                with atomic_open(self.cache, "wb", private=True) as handle:
                    handle.write(faiss_index.dump(index, tag))
            except OSError:
                pass  # a cache is an optimisation; a read-only gallery still searches


def entries(
    ids: np.ndarray, owners: np.ndarray, vectors: np.ndarray | None, mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """Index entries for a template mode: (sorted keys, their persons, vectors, most per person).

    ``each``: one entry per template, keyed by template id; ``mean``: one per person, the
    renormalised mean of their templates, keyed by their newest template id. Template ids are
    never reused, so an entry made stale by any later change carries a key that maps to no one.
    """
    if not len(ids):
        return ids, owners, vectors, 1
    if mode == "mean":
        persons, inverse = np.unique(owners, return_inverse=True)
        newest = np.full(len(persons), -1, np.int64)
        np.maximum.at(newest, inverse, ids)
        order = np.argsort(newest)
        if vectors is None:
            return newest[order], persons[order], None, 1
        sums = np.zeros((len(persons), vectors.shape[1]), np.float64)
        np.add.at(sums, inverse, vectors)
        means = (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12))[order]
        return newest[order], persons[order], means.astype(np.float32), 1
    order = np.argsort(ids)
    most = int(np.unique(owners, return_counts=True)[1].max())
    return ids[order], owners[order], None if vectors is None else vectors[order], most


def _best_persons(scores: np.ndarray, owners: np.ndarray, top_k: int) -> dict[int, float]:
    """The first ``top_k`` distinct live persons of one result row (rows are best first)."""
    best: dict[int, float] = {}
    for score, owner in zip(scores, owners, strict=True):
        if owner >= 0 and owner not in best:
            best[int(owner)] = float(score)
            if len(best) == top_k:
                break
    return best
