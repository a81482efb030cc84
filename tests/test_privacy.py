"""Biometric outputs are private: beat stores, evaluations and reports are 0600 files in 0700
directories whatever the umask, and a killed `prepare`'s temporary files go on the next run."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from typer.testing import CliRunner

from ecgbio.cli import app
from ecgbio.config import BeatConfig
from ecgbio.errors import StoreError
from ecgbio.io import atomic_open, private_dir, remove_stale_temps
from ecgbio.prepare import LOCK_FILE, PARTS_DIR, prepare_store
from ecgbio.sources.folder import folder_records
from ecgbio.store import BeatStore
from tests.conftest import simulate_ecg, write_wfdb
from tests.eval_fixtures import build_unseen_run

CONFIG = BeatConfig(rate=250)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_private_tree(root: Path) -> list[str]:
    """``root`` and every directory under it 0700, every file 0600; returns the names seen."""
    assert mode(root) == 0o700, root
    seen = []
    for path in sorted(root.rglob("*")):
        seen.append(str(path.relative_to(root)))
        assert mode(path) == (0o700 if path.is_dir() else 0o600), (path, oct(mode(path)))
    return seen


@pytest.fixture(scope="module", autouse=True)
def permissive_umask() -> Iterator[None]:
    """A umask that would give 0644 files and 0755 directories: privacy must not rely on it."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """(store, run dir) of a tiny synthetic run (also the store every prepare check reads)."""
    return build_unseen_run(tmp_path_factory.mktemp("privacy"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """4 short records of 2 persons (two chunks of a prepare are not needed: one is enough)."""
    root = tmp_path_factory.mktemp("cohort")
    for i in range(4):
        write_wfdb(root / f"P{i // 2}", f"r{i}", simulate_ecg(6, 250, 70 + 5 * i, seed=i), 250)
    return root


def test_a_prepared_store_is_private(run):
    store, _ = run
    names = assert_private_tree(store)
    assert set(names) == {"beats.npy", "beats.csv", "records.csv", "manifest.json", LOCK_FILE}


def test_an_interrupted_store_and_its_parts_are_private(cohort, tmp_path, monkeypatch):
    import ecgbio.prepare as prep

    real = prep._PartWriter.write

    def write_then_die(self, results):
        real(self, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(prep._PartWriter, "write", write_then_die)
    out = tmp_path / "deep" / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare_store(folder_records(cohort), out, CONFIG, progress=False)
    names = assert_private_tree(out)
    assert PARTS_DIR in names and any(n.endswith(".npy") for n in names)
    assert mode(tmp_path / "deep") == 0o755  # a parent made on the way only holds the store's name


def _leftovers(out: Path) -> list[Path]:
    """Temporary files as atomic_open leaves them when its writer is killed mid-write."""
    paths = [
        out / ".records.csv.k3x9_q2a.tmp",
        out / ".beats.npy.abcd1234.tmp",
        out / ".manifest.json.zz00zz00.tmp",
    ]
    if (out / PARTS_DIR).is_dir():
        paths += [
            out / PARTS_DIR / ".part-000001.npy.q1w2e3r4.tmp",
            out / PARTS_DIR / ".config.json.m5n6b7v8.tmp",
        ]
    for path in paths:
        path.write_bytes(b"half a write")
        os.chmod(path, 0o644)  # what a non-private writer's temporary file was
    return paths


def test_a_resumed_prepare_removes_a_killed_writers_leftovers(cohort, tmp_path, monkeypatch):
    import ecgbio.prepare as prep

    specs = folder_records(cohort)
    reference = prepare_store(specs, tmp_path / "ref", CONFIG, progress=False)
    real = prep._PartWriter.write

    def write_then_die(self, results):
        real(self, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(prep._PartWriter, "write", write_then_die)
    out = tmp_path / "store"
    with pytest.raises(KeyboardInterrupt):
        prepare_store(specs[:2], out, CONFIG, progress=False)
    monkeypatch.setattr(prep._PartWriter, "write", real)
    leftovers = _leftovers(out)
    (out / "notes.txt").write_text("mine")  # not a temporary file of ours: left alone

    summary = prepare_store(specs, out, CONFIG, progress=False)  # resumes
    assert summary.records_resumed == 2
    assert not any(p.exists() for p in leftovers)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert_private_tree(out)
    store = BeatStore.open(out)
    assert len(store) == reference.beats
    assert (out / "beats.npy").read_bytes() == (tmp_path / "ref" / "beats.npy").read_bytes()


def test_the_next_prepare_of_a_finished_store_removes_leftovers(cohort, tmp_path):
    specs = folder_records(cohort)
    out = tmp_path / "store"
    prepare_store(specs, out, CONFIG, progress=False)
    before = (out / "beats.npy").read_bytes()

    leftovers = _leftovers(out)
    with pytest.raises(StoreError, match="already exists"):  # refused, but it held the lock
        prepare_store(specs, out, CONFIG, progress=False)
    assert not any(p.exists() for p in leftovers)
    assert (out / "beats.npy").read_bytes() == before

    leftovers = _leftovers(out)
    prepare_store(specs, out, CONFIG, overwrite=True, progress=False)
    assert not any(p.exists() for p in leftovers)
    assert (out / "beats.npy").read_bytes() == before
    assert BeatStore.open(out).manifest["shape"][0] > 0
    assert_private_tree(out)


def test_a_store_being_written_is_left_alone(cohort, tmp_path):
    """A live writer holds the lock: a second prepare is refused and removes nothing."""
    specs = folder_records(cohort)
    out = tmp_path / "store"
    prepare_store(specs, out, CONFIG, progress=False)
    live = out / ".records.csv.live0001.tmp"
    live.write_bytes(b"being written")
    with FileLock(str(out / LOCK_FILE)):
        with pytest.raises(StoreError, match="another `ecgbio prepare` is writing"):
            prepare_store(specs, out, CONFIG, overwrite=True, progress=False)
        assert live.exists() and (out / "manifest.json").exists()


def test_a_folder_with_only_a_lock_and_leftovers_is_still_a_store(cohort, tmp_path):
    """A prepare killed before its first chunk leaves the lock (and perhaps temporaries)."""
    out = tmp_path / "store"
    out.mkdir()
    (out / LOCK_FILE).touch()
    (out / ".beats.csv.abcdefgh.tmp").touch()
    prepare_store(folder_records(cohort), out, CONFIG, progress=False)
    assert not (out / ".beats.csv.abcdefgh.tmp").exists()
    BeatStore.open(out)


def test_evaluate_out_and_report_are_private(run, tmp_path):
    store, run_dir = run
    runner = CliRunner()
    ev = tmp_path / "results" / "eval"
    args = ["evaluate", "--model", str(run_dir), "--store", str(store), "--out", str(ev)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert set(assert_private_tree(ev)) == {"metrics.json", "scores.npz"}
    with np.load(ev / "scores.npz", allow_pickle=False) as npz:
        assert "genuine_person" in npz.files  # why: it names persons

    result = runner.invoke(app, ["report", str(ev), "--out", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    names = assert_private_tree(tmp_path / "rep")
    assert "index.html" in names and {"roc.png", "det.png", "scores.png", "cmc.png"} <= set(names)

    result = runner.invoke(app, ["report", str(ev)])  # default: EVAL/report
    assert result.exit_code == 0, result.output
    assert "index.html" in assert_private_tree(ev / "report")


def test_an_existing_folder_keeps_its_mode_but_the_files_are_private(run, tmp_path):
    store, run_dir = run
    ev = tmp_path / "eval"
    ev.mkdir(mode=0o755)
    from ecgbio.evaluate import evaluate_run

    evaluate_run(run_dir, store, "enrol-probe", out=ev, ci_boot=0)
    assert mode(ev) == 0o755
    assert mode(ev / "metrics.json") == mode(ev / "scores.npz") == 0o600


@pytest.mark.parametrize("umask", [0o000, 0o077, 0o022])
def test_private_files_and_directories_ignore_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        with atomic_open(tmp_path / "made" / "f.bin", "wb", private=True) as handle:
            handle.write(b"x")
        assert mode(tmp_path / "made") == 0o700 and mode(tmp_path / "made" / "f.bin") == 0o600
        assert private_dir(tmp_path / "d") == tmp_path / "d" and mode(tmp_path / "d") == 0o700
    finally:
        os.umask(old)


def test_remove_stale_temps_takes_only_atomic_temporaries(tmp_path):
    keep = ["beats.npy", ".lock", ".hidden", "x.tmp", ".beats.npy.tmp", "notes.abcdefgh.tmp"]
    drop = [".beats.npy.abcdefgh.tmp", ".records.csv.a_b0c9d8.tmp"]
    for name in keep + drop:
        (tmp_path / name).touch()
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()  # a directory is never a temporary file of ours
    removed = remove_stale_temps(tmp_path, {"beats.npy", "records.csv"})
    assert sorted(p.name for p in removed) == sorted(drop)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*keep, ".dir.abcdefgh.tmp"])
    (tmp_path / ".other.abcdefgh.tmp").touch()
    assert remove_stale_temps(tmp_path, {"beats.npy"}) == []
    assert [p.name for p in remove_stale_temps(tmp_path)] == [".other.abcdefgh.tmp"]


def test_an_output_that_cannot_be_a_folder_is_one_clean_error(tmp_path):
    """evaluate/report --out naming a file, or a path under a file: exit 2, one line, no traceback."""
    from typer.testing import CliRunner

    from ecgbio.cli import EXIT_ERROR, app
    from ecgbio.errors import ConfigError
    from ecgbio.io import private_dir

    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        private_dir(afile)
    with pytest.raises(ConfigError, match="a parent is a file"):
        private_dir(afile / "sub" / "out")
    from ecgbio.evaluate import _check_out
    from tests.fixtures import build_ptbxl_store

    with pytest.raises(ConfigError, match="is a file, not a directory: choose another --out"):
        _check_out(afile, overwrite=True)  # evaluate refuses before it evaluates anything
    store = build_ptbxl_store(tmp_path / "s")
    result = CliRunner().invoke(
        app, ["evaluate", "--store", str(store), "--protocol", "enrol-probe", "--out", str(afile)]
    )
    assert result.exit_code == EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "is a file, not a directory" in lines[0], result.output
    assert afile.read_text() == "mine\n"  # nothing lost
