"""Galleries: enrol / identify / verify / remove, re-enrolment rules, model binding, quality gate,
crash safety (SIGKILL), concurrent writers, corrupt files, open-set decisions, calibration, indexes.

The model is a tiny one trained once per module on the synthetic PTB-XL-shaped cohort; enrolment
and probe records are that cohort's own WFDB files (its multi-record persons, never trained on).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ecgbio.gallery import Gallery, GalleryError, QualityGate
from ecgbio.gallery import index as faiss_index
from ecgbio.gallery.calibrate import calibrate
from ecgbio.gallery.store import DB_FILE, GalleryStore
from ecgbio.gallery.thresholds import DEFAULT_THRESHOLD, open_set, resolve

# torch, training and the synthetic sources are imported inside functions: processes spawned by
# the concurrency test import this module and should start in a fraction of a second
REPO = Path(__file__).resolve().parents[1]
DIM = 16  # the tiny model's embedding size


def Embedder(run: Path):  # noqa: N802 - stands for the class, imported lazily
    from ecgbio.embed import Embedder as _Embedder

    return _Embedder(run)


@dataclass
class Cohort:
    """A trained tiny model, a copy with other weights, and the cohort's records by person."""

    run: Path
    other_run: Path
    records: dict[str, list[Path]]  # persons with >= 2 records (never trained on)
    templates: dict[Path, np.ndarray]  # each record's template under ``run``
    embedder: Any  # ecgbio.embed.Embedder

    @property
    def persons(self) -> list[str]:
        return sorted(self.records)

    def score(self, a: Path, b: Path) -> float:
        return float(self.templates[a] @ self.templates[b])

    def stranger_of(self, person: str) -> Path:
        """The record of another person that scores lowest against ``person``'s first record."""
        mine = self.records[person][0]
        others = [r for p in self.persons if p != person for r in self.records[p]]
        return min(others, key=lambda r: self.score(mine, r))

    def run_with_thresholds(self, tmp: Path, table: dict) -> Path:
        """A copy of the run (same weights, same fingerprint) with its own thresholds.json."""
        run = tmp / "run-with-thresholds"
        shutil.copytree(self.run, run)
        (run / "thresholds.json").write_text(json.dumps(table))
        return run


def make_cohort(tmp: Path) -> Cohort:
    """Train the tiny model on the synthetic cohort (a few seconds) and embed its records."""
    from safetensors.torch import load_file, save_file

    from ecgbio.sources.ptbxl import ptbxl_records
    from tests.eval_fixtures import TINY, build_unseen_run

    assert TINY.embedding_dim == DIM
    _, run = build_unseen_run(tmp)
    (run / "thresholds.json").unlink(missing_ok=True)  # each test says which thresholds it uses
    other = tmp / "other-run"
    shutil.copytree(run, other)
    weights = load_file(other / "model.safetensors")
    first = sorted(weights)[0]
    weights[first] = weights[first] + 0.01
    save_file(weights, other / "model.safetensors")
    records: dict[str, list[Path]] = {}
    for spec in ptbxl_records(tmp / "ptbxl", rate=100):
        records.setdefault(spec.person, []).append(Path(f"{spec.path}.hea"))
    records = {p: r for p, r in records.items() if len(r) >= 2}
    embedder = Embedder(run)
    templates = {r: embedder.embed_record(r).template for rs in records.values() for r in rs}
    return Cohort(run, other, records, templates, embedder)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return make_cohort(tmp_path_factory.mktemp("gallery-cohort"))


def clustered(n_persons: int, per_person: int, noise: float, seed: int = 0) -> np.ndarray:
    """(persons, per_person, DIM) vectors around one random centre per person."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_persons, 1, DIM))
    centres /= np.linalg.norm(centres, axis=2, keepdims=True)
    return centres + noise * rng.normal(size=(n_persons, per_person, DIM)) / np.sqrt(DIM)


def new_gallery(cohort: Cohort, path: Path, **kwargs) -> Gallery:
    return Gallery.create(path, cohort.embedder, **kwargs)


# ------------------------------------------------------------------------- round trips


def test_enrol_identify_verify_remove_round_trip(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    persons = cohort.persons[:4]
    for person in persons:
        result = gallery.enroll(person, cohort.records[person][:1])
        assert result.templates == 1 and result.beats >= 3 and result.mode == "new"
        assert "beats used" in result.lines()[0]
    assert [p.name for p in gallery.persons()] == sorted(persons) and len(gallery) == 4

    target = persons[1]
    probe = cohort.records[target][0]  # the enrolled record itself: score 1
    found = gallery.identify(probe, top_k=3, threshold=0.5, margin=0.0)
    assert found.person == target and found.candidates[0].score == pytest.approx(1.0, abs=1e-5)
    assert [c.rank for c in found.candidates] == [1, 2, 3]
    other = cohort.records[persons[2]][0]  # scores are exact cosines of the record templates
    by_name = {c.person: c.score for c in gallery.identify(other, top_k=4, threshold=0).candidates}
    for person in persons:
        expected = cohort.score(other, cohort.records[person][0])
        assert by_name[person] == pytest.approx(expected, abs=1e-5)
    assert json.loads(json.dumps(found.to_dict()))["decision"] == target

    genuine = gallery.verify(target, cohort.records[target][1], threshold=-1.0)
    assert genuine.accepted and genuine.templates == 1
    assert genuine.score == pytest.approx(
        cohort.score(cohort.records[target][0], cohort.records[target][1]), abs=1e-5
    )
    impostor = gallery.verify(target, other, threshold=genuine.score + 1e-3)
    assert not impostor.accepted and impostor.to_dict()["decision"] == "reject"

    assert gallery.remove(target) == 1
    assert target not in gallery and len(gallery) == 3
    assert target not in [c.person for c in gallery.identify(probe, threshold=0).candidates]
    with pytest.raises(GalleryError, match="is not enrolled"):
        gallery.remove(target)
    with pytest.raises(GalleryError, match="is not enrolled"):
        gallery.verify(target, probe)
    gallery.close()
    again = Gallery.open(tmp_path / "g", cohort.embedder)  # persistent, same model accepted
    assert len(again) == 3
    again.close()


def test_re_enrolment_needs_replace_or_append(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    alice = cohort.persons[0]
    first, second = cohort.records[alice][:2]
    gallery.enroll("alice", [first])
    before = gallery.templates("alice")
    with pytest.raises(GalleryError, match=r"already enrolled; use --replace .* or --append"):
        gallery.enroll("alice", [second])
    assert gallery.templates("alice") == before  # untouched

    appended = gallery.enroll("alice", [second], mode="append")
    assert appended.templates == 2 and len(gallery.templates("alice")) == 2

    replaced = gallery.enroll("alice", [second], mode="replace")
    assert replaced.removed_templates == 2 and replaced.templates == 1
    rows = gallery.templates("alice")
    assert [r.record for r in rows] == [os.path.abspath(second)]
    assert rows[0].id > max(r.id for r in before)  # ids are never reused
    with pytest.raises(GalleryError, match="listed twice"):
        gallery.enroll("bob", [first, first])
    for bad in ("", "  ", "a\nb", "x" * 300):
        with pytest.raises(GalleryError, match="person id"):
            gallery.enroll(bad, [first])


def test_a_gallery_refuses_another_model(cohort, tmp_path):
    new_gallery(cohort, tmp_path / "g").close()
    other = Embedder(cohort.other_run)
    assert other.fingerprint != cohort.embedder.fingerprint
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path / "g", other)
    text = str(err.value)
    assert "\n" not in text and str(tmp_path / "g") in text
    assert other.fingerprint[:12] in text and cohort.embedder.fingerprint[:12] in text


def test_quality_gate_refusal_stores_nothing(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    good, other = cohort.records[cohort.persons[0]][:2]
    generation = gallery.info()["generation"]
    with pytest.raises(GalleryError, match=r"too few usable beats: 2 \(need 3\).*nothing stored"):
        gallery.enroll("alice", [good, other], max_beats=2)
    with pytest.raises(GalleryError, match=r"beats disagree.*nothing stored") as err:
        gallery.enroll("alice", [good], gate=QualityGate(min_consistency=0.99999))
    assert str(good) in str(err.value)
    with pytest.raises(GalleryError, match="too few usable beats: 4 \\(need 5\\)"):
        gallery.enroll("alice", [good, other], max_beats=4, gate=QualityGate(min_beats=5))
    assert len(gallery) == 0 and gallery.info()["generation"] == generation
    assert gallery.enroll("alice", [good, other]).templates == 2  # all or nothing, then fine


# ------------------------------------------------------------------------ open-set decisions


def test_a_stranger_is_unknown_with_a_single_enrolled_person(cohort, tmp_path):
    person = cohort.persons[0]
    mine = cohort.records[person][0]
    stranger = cohort.stranger_of(person)
    threshold = (cohort.score(mine, stranger) + 1.0) / 2
    run = cohort.run_with_thresholds(
        tmp_path,
        {
            "eer": {"threshold": threshold - 0.01, "far": 0.05},
            "far=0.01": {"threshold": threshold},
            "genuine_scores": 3,
        },
    )
    gallery = Gallery.create(tmp_path / "g", Embedder(run))
    gallery.enroll(person, [mine])
    unknown = gallery.identify(stranger)
    assert unknown.unknown and unknown.person is None and "below the threshold" in unknown.reason
    assert unknown.operating_point.source == "model" and unknown.operating_point.far == 0.01
    assert unknown.to_dict()["decision"] == "unknown" and len(unknown.candidates) == 1
    known = gallery.identify(mine)
    assert known.person == person and "only person enrolled" in known.reason
    assert not gallery.verify(person, stranger).accepted
    assert gallery.verify(person, mine).accepted
    assert gallery.identify(stranger, far="eer").operating_point.point == "eer"
    with pytest.raises(GalleryError, match=r"no operating point far=0\.001 .*available: eer"):
        gallery.identify(stranger, far="0.001")


def test_the_margin_rejects_two_look_alike_persons(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    record = cohort.records[cohort.persons[0]][0]
    vector = cohort.templates[record]
    gallery.enroll_vectors("twin-a", vector)
    gallery.enroll_vectors("twin-b", vector + 1e-4)
    result = gallery.identify(record, threshold=0.5, margin=0.02)
    assert result.unknown and "less than the margin" in result.reason
    assert {c.person for c in result.candidates} == {"twin-a", "twin-b"}
    assert not gallery.identify(record, threshold=0.5, margin=0.0).unknown


def test_operating_points_and_the_uncalibrated_default(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    gallery.enroll_vectors("p", np.ones(DIM))
    point = gallery.operating_point()
    assert point.source == "default" and point.threshold == DEFAULT_THRESHOLD
    assert point.far is None and "uncalibrated" in point.warning
    assert any("uncalibrated" in w for w in gallery.identify(np.ones(DIM)).warnings)
    assert gallery.operating_point(threshold=0.3).source == "manual"
    with pytest.raises(GalleryError, match="--far must be"):
        gallery.operating_point("often")
    table = {"far=0.01": {"threshold": 0.8}}
    cal = {"far=0.01": {"threshold": 0.9}}
    assert resolve("0.01", model_table=table).threshold == 0.8
    assert resolve(0.01, gallery_table=cal, model_table=table).source == "gallery"
    assert open_set([], resolve(threshold=0.5), 0.1) == (None, "the gallery is empty")
    bad = cohort.run_with_thresholds(tmp_path, {})
    (bad / "thresholds.json").write_text("{broken")
    with pytest.raises(GalleryError, match=r"thresholds\.json: unreadable thresholds file"):
        Gallery.open(tmp_path / "g", Embedder(bad)).operating_point()


# --------------------------------------------------------------------------- calibration


def test_calibrate_refuses_overlapping_scores_and_stores_nothing(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    for i, vectors in enumerate(clustered(12, 3, noise=50.0)):  # pure noise: persons overlap
        gallery.enroll_vectors(f"p{i}", vectors)
    with pytest.raises(GalleryError, match=r"overlap too much \(EER .* > 25%.*nothing stored"):
        gallery.calibrate()
    assert gallery.calibration is None and gallery.operating_point().source == "default"


def test_calibrate_refuses_too_few_genuine_scores(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    for i, vectors in enumerate(clustered(5, 1, noise=0.1)):
        gallery.enroll_vectors(f"p{i}", vectors)
    with pytest.raises(GalleryError, match=r"gives 0 genuine scores .* enrol another record"):
        gallery.calibrate()
    one = new_gallery(cohort, tmp_path / "one")
    one.enroll_vectors("p", clustered(1, 3, noise=0.1)[0])
    with pytest.raises(GalleryError, match="at least two enrolled persons"):
        one.calibrate()


@pytest.mark.parametrize("mode", ["each", "mean"])
def test_calibrated_thresholds_are_stored_and_preferred(cohort, tmp_path, mode):
    run = cohort.run_with_thresholds(tmp_path, {"far=0.01": {"threshold": 0.123}})
    gallery = Gallery.create(tmp_path / "g", Embedder(run), template_mode=mode)
    vectors = clustered(40, 3, noise=0.3)
    for i, person in enumerate(vectors):
        gallery.enroll_vectors(f"p{i}", person)
    assert gallery.operating_point().source == "model"
    result = gallery.calibrate()
    assert result["genuine"] == 120 and result["impostor"] == 120 * 39
    assert result["eer"] < 0.05 and set(result["points"]) == {"eer", "far=0.01", "far=0.001"}
    point = gallery.operating_point()
    assert (
        point.source == "gallery" and point.threshold == result["points"]["far=0.01"]["threshold"]
    )
    assert gallery.info()["calibration"]["eer"] == result["eer"]
    # a new template mode changes what a score is: the calibration is dropped
    gallery.configure(template_mode="mean" if mode == "each" else "each")
    assert gallery.calibration is None


def test_calibration_scores_are_the_scores_verification_computes():
    vectors = clustered(3, 2, noise=0.5, seed=3).reshape(6, DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    owners = np.repeat([7, 8, 9], 2)
    result = calibrate(vectors, owners, min_genuine=1, max_eer=1.0)
    sims = vectors @ vectors.T
    assert result["genuine"] == 6 and result["impostor"] == 12  # each template vs 2 others
    assert result["skipped_fars"] == [0.01, 0.001]  # 12 impostor scores cannot resolve 1/100
    pairs = [sims[0, 1], sims[2, 3], sims[4, 5]]
    assert result["points"]["eer"]["threshold"] <= max(pairs) + 1e-6


# ------------------------------------------------------------------------- template modes


def test_mean_mode_scores_against_each_persons_mean_template(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g", template_mode="mean")
    person = cohort.persons[0]
    records = cohort.records[person][:2]
    gallery.enroll(person, records)
    gallery.enroll("other", [cohort.stranger_of(person)])
    mean = sum(cohort.templates[r] for r in records)
    mean = mean / np.linalg.norm(mean)
    probe = cohort.records[person][-1]
    expected = float(mean @ cohort.templates[probe])
    assert gallery.verify(person, probe, threshold=0).score == pytest.approx(expected, abs=1e-5)
    top = gallery.identify(probe, threshold=0).candidates[0]
    assert top.person == person and top.score == pytest.approx(expected, abs=1e-5)
    assert gallery.info()["template_mode"] == "mean"


# ------------------------------------------------------------------ crash safety, concurrency


def test_sigkill_during_enrolment_keeps_every_committed_person(cohort, tmp_path):
    path = tmp_path / "g"
    new_gallery(cohort, path).close()
    code = (
        "import numpy as np\n"
        "from ecgbio.gallery import Gallery\n"
        f"g = Gallery.open({str(path)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "for i in range(100000):\n"
        f"    g.enroll_vectors(f'p{{i}}', rng.normal(size=(4, {DIM})))\n"
        "    print(f'p{i}', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    committed = []
    try:
        while len(committed) < 15:
            line = proc.stdout.readline()
            assert line, "the enrolling process died on its own"
            committed.append(line.strip())
        time.sleep(0.05)  # let it get into the middle of the next transactions
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    gallery = Gallery.open(path)
    enrolled = {p.name: p.templates for p in gallery.persons()}
    assert set(committed) <= set(enrolled)
    assert set(enrolled.values()) == {4}  # nobody half-enrolled
    assert gallery.store.integrity() == "ok"
    gallery.enroll_vectors("after", np.ones(DIM))  # the lock died with the process
    assert "after" in gallery


def _enrol_many(path: str, prefix: str, n: int, barrier) -> None:
    """Worker of the concurrency test (module level: spawned processes import it)."""
    from ecgbio.gallery import Gallery

    rng = np.random.default_rng(len(prefix))
    barrier.wait(timeout=60)
    with Gallery.open(path) as gallery:
        for i in range(n):
            gallery.enroll_vectors(f"{prefix}{i}", rng.normal(size=(2, DIM)))


def test_two_processes_enrolling_at_once_lose_nobody(cohort, tmp_path):
    path = tmp_path / "g"
    new_gallery(cohort, path).close()
    ctx = multiprocessing.get_context("spawn")  # never fork a process that holds torch/FAISS
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(target=_enrol_many, args=(str(path), prefix, 25, barrier))
        for prefix in ("a", "bb")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with Gallery.open(path) as gallery:
        names = {p.name for p in gallery.persons()}
        assert names == {f"a{i}" for i in range(25)} | {f"bb{i}" for i in range(25)}
        assert gallery.info()["templates"] == 100 and gallery.info()["generation"] == 50


# ------------------------------------------------------------------------- damaged files


def assert_clear(err: pytest.ExceptionInfo, *fragments: str) -> None:
    text = str(err.value)
    assert "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def test_corrupt_truncated_and_missing_galleries_are_clear_errors(cohort, tmp_path):
    path = tmp_path / "g"
    gallery = new_gallery(cohort, path)
    for i, vectors in enumerate(clustered(100, 3, noise=0.3)):
        gallery.enroll_vectors(f"p{i}", vectors)
    gallery.close()
    db = path / DB_FILE
    data = db.read_bytes()
    assert len(data) > 8 * 4096

    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryError) as err:
        Gallery.open(path)
    assert_clear(err, str(db), "truncated")

    db.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(GalleryError) as err:
        Gallery.open(path)
    assert_clear(err, str(db), "corrupt")

    db.write_bytes(data[:100] + bytes(200) + data[300:])  # damaged pages, intact header
    with pytest.raises(GalleryError) as err, Gallery.open(path) as damaged:
        damaged.identify(np.ones(DIM), threshold=0)
    assert_clear(err, str(db))

    db.write_bytes(b"")
    with pytest.raises(GalleryError) as err:
        Gallery.open(path)
    assert_clear(err, str(db), "not an ecgbio gallery")

    db.unlink()
    with pytest.raises(GalleryError) as err:
        Gallery.open(path)
    assert_clear(err, str(path), "no gallery here")
    with pytest.raises(GalleryError) as err:
        Gallery.open(tmp_path / "absent")
    assert_clear(err, "no gallery here")
    assert not (tmp_path / "absent").exists()  # opening never creates

    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "thesis.txt").write_text("mine")
    with pytest.raises(GalleryError, match="not empty and holds no gallery"):
        Gallery.create(tmp_path / "papers", cohort.embedder)


def test_files_are_private_and_pickle_free(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_index, "APPROX_MIN", 10)
    path = tmp_path / "g"
    gallery = new_gallery(cohort, path, index="hnsw")
    for i, vectors in enumerate(clustered(20, 2, noise=0.3)):
        gallery.enroll_vectors(f"p{i}", vectors)
    gallery.identify(np.ones(DIM), threshold=0)  # writes the index cache
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for name in (DB_FILE, ".lock", "index.faiss"):
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o600, name
    for name in (DB_FILE, "index.faiss"):
        assert b"pickle" not in (path / name).read_bytes()[:64]


# ------------------------------------------------------------------------------ indexes


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_agree_with_exact_search(kind):
    vectors = clustered(300, 4, noise=0.5, seed=1).reshape(-1, DIM).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 3  # stable ids, not positions
    queries = vectors[::10] + 0.05 * np.random.default_rng(2).normal(size=(120, DIM))
    exact = faiss_index.search(faiss_index.build(vectors, ids, "flat"), queries, 1)[1]
    approx_index = faiss_index.build(vectors, ids, kind)
    approx = faiss_index.search(approx_index, queries, 1)[1]
    assert np.mean(exact[:, 0] == approx[:, 0]) >= 0.95
    data = faiss_index.dump(approx_index, {"generation": 3})
    assert faiss_index.load(data, {"generation": 4}) is None  # stale
    assert faiss_index.load(data[:-10] + bytes(10), {"generation": 3}) is None  # damaged
    loaded = faiss_index.load(data, {"generation": 3})
    assert np.array_equal(faiss_index.search(loaded, queries, 1)[1], approx)
    assert faiss_index.resolve_kind("auto", 10) == "flat"
    assert faiss_index.resolve_kind(kind, 10) == "flat"  # too small to be worth it


def test_hnsw_gallery_keeps_its_cache_current_across_writes(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(faiss_index, "APPROX_MIN", 50)
    path = tmp_path / "g"
    gallery = new_gallery(cohort, path, index="hnsw")
    vectors = clustered(60, 2, noise=0.3, seed=4)
    for i, person in enumerate(vectors[:50]):
        gallery.enroll_vectors(f"p{i}", person)
    assert gallery.identify(vectors[3, 0], threshold=0).candidates[0].person == "p3"
    assert gallery.identify(vectors[3, 0], threshold=0).index == "hnsw"
    cache = path / "index.faiss"

    def cached_generation() -> int:
        data = cache.read_bytes()
        start = len(faiss_index._MAGIC) + 4
        size = int.from_bytes(data[len(faiss_index._MAGIC) : start], "little")
        return json.loads(data[start : start + size])["generation"]

    assert cached_generation() == gallery.info()["generation"]
    gallery.enroll_vectors("late", vectors[55])  # added to the cached index, not rebuilt
    assert cached_generation() == gallery.info()["generation"]
    fresh = Gallery.open(path)  # another process: finds the cache current
    assert fresh.identify(vectors[55, 1], threshold=0).candidates[0].person == "late"
    gallery.remove("p3")  # HNSW cannot remove: the vectors are zeroed, the ids skipped
    assert cached_generation() == gallery.info()["generation"]
    assert "p3" not in [c.person for c in fresh.identify(vectors[3, 0], threshold=0).candidates]
    index = faiss_index.load(cache.read_bytes(), {"generation": cached_generation()})
    faiss = faiss_index.faiss_module()
    stored = np.asarray(faiss.downcast_index(index.index).reconstruct_n(0, index.ntotal))
    gone = np.asarray(vectors[3] / np.linalg.norm(vectors[3], axis=1, keepdims=True), np.float32)
    assert (stored @ gone.T).max() < 0.999  # the removed person's data left the cache
    assert (np.abs(stored).sum(1) == 0).sum() == 2  # p3's two templates, nothing else
    for i in range(20):  # past MAX_DEAD dead entries the index is rebuilt from the vectors
        gallery.remove(f"p{i + 10}")
    assert not cache.exists()
    assert fresh.identify(vectors[4, 0], threshold=0).candidates[0].person == "p4"
    assert cache.exists() and cached_generation() == gallery.info()["generation"]
    cache.write_bytes(b"ECGBIO-FAISS garbage")  # a damaged cache is rebuilt, not trusted
    assert Gallery.open(path).identify(vectors[5, 0], threshold=0).candidates[0].person == "p5"


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_mean_mode_index_follows_appends_and_removals(cohort, tmp_path, monkeypatch, kind):
    monkeypatch.setattr(faiss_index, "APPROX_MIN", 20)
    gallery = new_gallery(cohort, tmp_path / "g", index=kind, template_mode="mean")
    vectors = clustered(40, 3, noise=0.3, seed=6)
    for i, person in enumerate(vectors):
        gallery.enroll_vectors(f"p{i}", person[:2])
    assert gallery.identify(vectors[0, 0], threshold=0).index == kind
    gallery.enroll_vectors("p0", -vectors[1, :1], mode="append")  # p0's mean moves
    gallery.enroll_vectors("p1", vectors[0, :1], mode="replace")  # p1 now looks like p0 did
    gallery.remove("p2")
    for i, probe in ((0, vectors[0, 2]), (1, vectors[0, 2]), (5, vectors[5, 2])):
        found = {
            c.person: c.score for c in gallery.identify(probe, top_k=40, threshold=0).candidates
        }
        assert "p2" not in found and len(found) == 39
        mine = gallery.store.vectors(f"p{i}").vectors.sum(0)
        expected = float(mine @ probe / np.linalg.norm(mine) / np.linalg.norm(probe))
        assert found[f"p{i}"] == pytest.approx(expected, abs=1e-5)


def test_ids_map_back_to_persons_with_several_templates_each(cohort, tmp_path):
    gallery = new_gallery(cohort, tmp_path / "g")
    vectors = clustered(30, 5, noise=0.4, seed=5)
    for i, person in enumerate(vectors):
        gallery.enroll_vectors(f"p{i}", person)
    ranked = gallery.search(vectors[:, 0], top_k=4)
    for i, candidates in enumerate(ranked):
        names = [c.person for c in candidates]
        assert names[0] == f"p{i}" and len(set(names)) == 4  # persons, not templates
        scores = [c.score for c in candidates]
        assert scores == sorted(scores, reverse=True)


def test_open_store_never_creates_files(tmp_path):
    with pytest.raises(GalleryError, match="no gallery here"):
        GalleryStore.open(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_fpir_warning_grows_with_the_gallery():
    from ecgbio.gallery.thresholds import OperatingPoint, fpir_warning

    point = OperatingPoint(0.6, "far=0.01", 0.01, "model")
    assert fpir_warning(point, 5) is None  # 1 - 0.99^5 = 4.9 %: below the warning level
    text = fpir_warning(point, 90)  # 1 - 0.99^90 = 60 %
    assert text is not None and "90 persons" in text and "60%" in text
    assert fpir_warning(OperatingPoint(0.6, "far=0.001", 0.001, "model"), 90) is None
    assert fpir_warning(OperatingPoint(0.6, "manual", None, "manual"), 90) is None
