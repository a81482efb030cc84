"""The gallery commands: exit codes 0/1/2, one-line errors, --json outputs, on the tiny model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from ecgbio.cli_gallery import register
from ecgbio.gallery import Gallery
from tests.cli_checks import one_line_error as assert_one_line_error
from tests.test_gallery import DIM, Cohort, clustered, make_cohort

runner = CliRunner()


def _app() -> typer.Typer:
    """The gallery commands on their own app: tests do not depend on how cli.py mounts them."""
    app = typer.Typer(pretty_exceptions_enable=False)

    @app.callback()
    def main() -> None:
        """ecgbio (test)."""

    register(app)
    return app


APP = _app()


def run(*args: object):
    return runner.invoke(APP, [str(a) for a in args])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return make_cohort(tmp_path_factory.mktemp("gallery-cli-cohort"))


@pytest.fixture
def enrolled(cohort, tmp_path) -> tuple[Path, Path, str]:
    """(run with thresholds.json, gallery, person) with one enrolled person."""
    person = cohort.persons[0]
    mine = cohort.records[person][0]
    threshold = (cohort.score(mine, cohort.stranger_of(person)) + 1.0) / 2
    run_dir = cohort.run_with_thresholds(
        tmp_path,
        {"eer": {"threshold": threshold, "far": 0.02}, "far=0.01": {"threshold": threshold}},
    )
    gallery = tmp_path / "g"
    result = run("enroll", "--model", run_dir, "--gallery", gallery, "--id", person, mine, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["person"] == person and data["templates"] == 1 and data["created_gallery"]
    assert data["beats"] == data["records"][0]["beats"] >= 3
    return run_dir, gallery, person


def test_enroll_identify_verify_exit_codes_and_json(cohort, enrolled):
    run_dir, gallery, person = enrolled
    mine = cohort.records[person][0]
    stranger = cohort.stranger_of(person)
    common = ("--model", run_dir, "--gallery", gallery)

    found = run("identify", *common, mine, "--json")
    assert found.exit_code == 0, found.output
    data = json.loads(found.stdout)
    assert data["decision"] == person and data["candidates"][0]["person"] == person
    assert data["operating_point"]["source"] == "model" and data["far"] == 0.01

    unknown = run("identify", *common, stranger, "--json", "--top-k", "3")
    assert unknown.exit_code == 1, unknown.output
    data = json.loads(unknown.stdout)
    assert data["decision"] == "unknown" and data["unknown"] and len(data["candidates"]) == 1

    text = run("identify", *common, stranger)
    assert text.exit_code == 1 and text.stdout.startswith("unknown")

    accept = run("verify", *common, "--claim", person, mine, "--json")
    assert accept.exit_code == 0, accept.output
    data = json.loads(accept.stdout)
    assert data["decision"] == "accept" and data["score"] >= data["threshold"]
    assert data["far"] == 0.01

    reject = run("verify", *common, "--claim", person, stranger)
    assert reject.exit_code == 1 and reject.stdout.startswith("reject"), reject.output
    assert "set for 1 % false accepts" in reject.stdout

    assert run("verify", *common, "--claim", person, stranger, "--far", "eer").exit_code == 1
    assert_one_line_error(
        run("verify", *common, "--claim", person, mine, "--far", "0.001"), "no operating point"
    )
    assert_one_line_error(
        run("verify", *common, "--claim", "nobody", mine), "'nobody' is not enrolled"
    )
    assert_one_line_error(run("identify", *common, Path(mine).with_name("missing.hea")), "missing")


def test_gallery_list_info_remove(cohort, enrolled):
    run_dir, gallery, person = enrolled
    listed = run("gallery", "list", gallery, "--json")
    assert listed.exit_code == 0, listed.output
    assert [p["name"] for p in json.loads(listed.stdout)["persons"]] == [person]
    assert person in run("gallery", "list", gallery).stdout

    info = run("gallery", "info", gallery, "--json", "--check")
    assert info.exit_code == 0, info.output
    data = json.loads(info.stdout)
    assert data["persons"] == 1 and data["integrity"] == "ok" and data["index_in_use"] == "flat"
    assert data["dim"] == DIM and data["beat_config"]["rate"] == 100

    removed = run("gallery", "remove", gallery, "--id", person, "--json")
    assert removed.exit_code == 0 and json.loads(removed.stdout)["templates"] == 1
    assert_one_line_error(run("gallery", "remove", gallery, "--id", person), "is not enrolled")
    assert_one_line_error(
        run("identify", "--model", run_dir, "--gallery", gallery, cohort.records[person][0]),
        "no enrolled persons",
    )


def test_a_record_whose_path_is_not_utf8_is_enrolled_and_named_safely(cohort, enrolled, tmp_path):
    """A record under ``dir\\xff/`` failed with "unexpected UnicodeEncodeError: ... surrogates
    not allowed": the record's name is stored as text. Its undecodable bytes are escaped."""
    run_dir, gallery, _ = enrolled
    source = cohort.records[cohort.persons[1]][0]
    folder = tmp_path / os.fsdecode(b"dir\xff")  # as Python sees such a name: a lone surrogate
    folder.mkdir()
    for part in source.parent.glob(f"{source.stem}.*"):
        shutil.copy(part, folder / part.name)
    record = folder / source.name
    shown = os.fsencode(record).decode("utf-8", "backslashreplace")
    assert "dir\\xff" in shown

    common = ("--model", run_dir, "--gallery", gallery)
    enrolled_json = run("enroll", *common, "--id", "u", record, "--json")
    assert enrolled_json.exit_code == 0, enrolled_json.output
    assert json.loads(enrolled_json.stdout)["records"][0]["record"] == shown
    text = run("enroll", *common, "--id", "v", record)  # printed, not only as JSON
    assert text.exit_code == 0 and shown in text.stdout, text.output

    with Gallery.open(gallery) as opened:
        assert {t.record for t in opened.templates("u") + opened.templates("v")} == {shown}
        opened.enroll_vectors("w", np.eye(DIM)[:1], records=[os.fsdecode(b"w\xfe.npy")])
        assert opened.templates("w")[0].record == "w\\xfe.npy"
    info = run("gallery", "info", gallery, "--check", "--json")
    assert info.exit_code == 0 and json.loads(info.stdout)["integrity"] == "ok", info.output
    found = run("identify", *common, record, "--json")
    assert json.loads(found.stdout)["candidates"][0]["person"] in ("u", "v"), found.output


def test_re_enrol_rules(cohort, enrolled):
    run_dir, gallery, person = enrolled
    second = cohort.records[person][1]
    common = ("enroll", "--model", run_dir, "--gallery", gallery, "--id", person)
    assert_one_line_error(run(*common, second), "already enrolled", "--replace", "--append")
    assert_one_line_error(run(*common, second, "--replace", "--append"), "exclude each other")
    appended = run(*common, second, "--append", "--json")
    assert appended.exit_code == 0 and json.loads(appended.stdout)["templates"] == 2
    replaced = run(*common, second, "--replace")
    assert replaced.exit_code == 0, replaced.output
    assert "replacing the earlier enrolment" in replaced.stdout and "2 replaced" in replaced.stdout
    assert_one_line_error(
        run(*common[:-1], "other", second, "--template-mode", "mean"),
        "gallery already uses --template-mode each",
    )


def test_model_mismatch_and_quality_gate(cohort, enrolled):
    run_dir, gallery, person = enrolled
    probe = cohort.records[person][0]
    mismatch = run("identify", "--model", cohort.other_run, "--gallery", gallery, probe)
    assert_one_line_error(mismatch, "gallery belongs to model", "not to model", str(gallery))

    stranger = cohort.stranger_of(person)
    enrol_bob = ("enroll", "--model", run_dir, "--gallery", gallery, "--id", "bob", stranger)
    refused = run(*enrol_bob, "--max-beats", "2")
    assert_one_line_error(refused, "too few usable beats: 2 (need 3)", "nothing stored")
    inconsistent = run(*enrol_bob, "--min-consistency", "0.99999")
    assert_one_line_error(inconsistent, "beats disagree")
    names = [
        p["name"] for p in json.loads(run("gallery", "list", gallery, "--json").stdout)["persons"]
    ]
    assert names == [person]
    fresh = gallery.parent / "fresh"  # a refused first enrolment leaves no empty gallery behind
    refused = run(
        "enroll",
        "--model",
        run_dir,
        "--gallery",
        fresh,
        "--id",
        "bob",
        stranger,
        "--max-beats",
        "1",
    )
    assert_one_line_error(refused, "too few usable beats")
    assert not fresh.exists()


def test_corrupt_and_missing_galleries_exit_2(cohort, enrolled, tmp_path):
    run_dir, gallery, person = enrolled
    (gallery / "gallery.sqlite").write_bytes(b"not a database at all" * 300)
    for args in (
        ("gallery", "list", gallery),
        ("gallery", "info", gallery),
        ("identify", "--model", run_dir, "--gallery", gallery, cohort.records[person][0]),
        (
            "enroll",
            "--model",
            run_dir,
            "--gallery",
            gallery,
            "--id",
            "x",
            cohort.records[person][0],
        ),
    ):
        assert_one_line_error(run(*args), "gallery.sqlite", "corrupt")
    assert_one_line_error(run("gallery", "list", tmp_path / "none"), "no gallery here")


def test_calibrate_refuses_overlap_then_calibrates(cohort, tmp_path):
    path = tmp_path / "g"
    with Gallery.create(path, cohort.embedder) as gallery:
        for i, vectors in enumerate(clustered(12, 3, noise=50.0)):
            gallery.enroll_vectors(f"noise{i}", vectors)
    assert_one_line_error(run("gallery", "calibrate", path), "overlap too much", "nothing stored")
    assert json.loads(run("gallery", "info", path, "--json").stdout)["calibration"] is None

    good = tmp_path / "good"
    with Gallery.create(good, cohort.embedder) as gallery:
        for i, vectors in enumerate(clustered(30, 2, noise=0.3, seed=9)):
            gallery.enroll_vectors(f"p{i}", vectors)
    done = run("gallery", "calibrate", good, "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["genuine"] == 60 and "far=0.01" in data["points"] and data["eer"] < 0.25
    assert "EER" in run("gallery", "info", good).stdout
    probe = np.asarray(clustered(30, 2, noise=0.3, seed=9)[0, 0])
    with Gallery.open(good) as gallery:
        assert gallery.identify(probe).operating_point.source == "gallery"
    assert run("gallery", "calibrate", good, "--clear").exit_code == 0
    with Gallery.open(good) as gallery:
        assert gallery.calibration is None


def test_configure_switches_the_index_and_keeps_templates(cohort, enrolled):
    _, gallery, person = enrolled
    result = run("gallery", "configure", gallery, "--index", "hnsw", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["index"] == "hnsw"
    assert_one_line_error(run("gallery", "configure", gallery, "--index", "lsh"), "index must be")
    assert person in run("gallery", "list", gallery).stdout


def test_the_main_cli_mounts_the_gallery_commands():
    import ecgbio.cli

    names = {c.name for c in ecgbio.cli.app.registered_commands}
    if "enroll" not in names:
        pytest.skip("ecgbio/cli.py does not call cli_gallery.register(app) yet")
    assert {"enroll", "identify", "verify"} <= names
    assert "gallery" in {g.name for g in ecgbio.cli.app.registered_groups}


def _killed_writer(db: Path, spill: bool) -> None:
    """A process killed in the middle of a write transaction (``spill``: after SQLite wrote
    changed pages into the database file itself, so its journal is hot)."""
    import subprocess
    import sys

    code = (
        "import os, sqlite3\n"
        f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
        f"c.execute('PRAGMA cache_size = {1 if spill else 10000}')\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "for i in range(3000):\n"
        "    c.execute('INSERT INTO meta(key, value) VALUES (?, ?)', (f'junk{i}', 'x' * 500))\n"
        "os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    assert Path(str(db) + "-journal").is_file()


@pytest.mark.parametrize("spill", [False, True])
def test_a_killed_writer_s_journal_is_gone_after_the_next_open(enrolled, spill):
    import sqlite3

    _run_dir, gallery, _person = enrolled
    before = run("gallery", "list", gallery, "--json").stdout
    db = gallery / "gallery.sqlite"
    _killed_writer(db, spill)
    after = run("gallery", "list", gallery, "--json")
    assert after.exit_code == 0 and after.stdout == before  # nothing lost, nothing half-written
    assert not Path(str(db) + "-journal").exists()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("SELECT count(*) FROM meta WHERE key LIKE 'junk%'").fetchone() == (0,)


def test_a_live_foreign_writer_s_journal_is_kept(enrolled):
    import sqlite3

    from ecgbio.gallery.store import GalleryStore

    _run_dir, gallery, _person = enrolled
    db = gallery / "gallery.sqlite"
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO meta(key, value) VALUES ('live', 'x')")
        journal = Path(str(db) + "-journal")
        assert journal.is_file()
        store = GalleryStore.open(gallery)  # an sqlite3 shell holds the write lock: hands off
        store.conn.close()
        assert journal.is_file()
        writer.execute("ROLLBACK")
    finally:
        writer.close()


def test_a_gallery_bound_before_a_config_field_existed_still_opens(enrolled, cohort):
    """A field added to BeatConfig/ModelConfig later (with a default) must not orphan galleries."""
    import json as _json
    import sqlite3

    from ecgbio.config import BeatConfig, ModelConfig
    from ecgbio.gallery.store import binding_fingerprint

    run_dir, gallery, person = enrolled
    db = gallery / "gallery.sqlite"
    with sqlite3.connect(db) as conn:
        binding = _json.loads(
            conn.execute("SELECT value FROM meta WHERE key = 'model_binding'").fetchone()[0]
        )
        # as an older ecgbio wrote it, before these fields (at their defaults) existed
        assert binding["beat"]["max_beats"] == BeatConfig.max_beats
        assert binding["model"]["stem_kernel"] == ModelConfig.stem_kernel
        del binding["beat"]["max_beats"], binding["model"]["stem_kernel"]
        for key, value in (
            ("model_binding", binding),
            ("fingerprint", binding_fingerprint(binding)),
        ):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (_json.dumps(value), key))
    mine = cohort.records[person][0]
    result = run("verify", "--model", run_dir, "--gallery", gallery, "--claim", person, mine)
    assert result.exit_code in (0, 1), result.output  # an answer, not a refusal
    binding["model"]["widths"] = [1, 2]  # a real difference is still refused
    with sqlite3.connect(db) as conn:
        for key, value in (
            ("model_binding", binding),
            ("fingerprint", binding_fingerprint(binding)),
        ):
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (_json.dumps(value), key))
    refused = run("verify", "--model", run_dir, "--gallery", gallery, "--claim", person, mine)
    assert refused.exit_code == 2 and "model config" in refused.output


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (("--min-genuine", "0"), "--min-genuine must be >= 1, got 0"),
        (("--min-genuine", "-5"), "--min-genuine must be >= 1, got -5"),
        (("--max-eer", "nan"), "--max-eer must be in (0, 1], got nan"),
        (("--max-eer", "-1"), "--max-eer must be in (0, 1], got -1"),
    ],
)
def test_calibrate_refuses_absurd_options_and_stores_nothing(cohort, tmp_path, option, problem):
    """A minimum of 0 genuine scores used to fail deep inside as "the array is empty", and a NaN
    EER limit switched the overlap check off."""
    good = tmp_path / "good"
    with Gallery.create(good, cohort.embedder) as gallery:
        for i, vectors in enumerate(clustered(30, 2, noise=0.3, seed=9)):
            gallery.enroll_vectors(f"p{i}", vectors)
    assert_one_line_error(run("gallery", "calibrate", good, *option), problem)
    assert json.loads(run("gallery", "info", good, "--json").stdout)["calibration"] is None


def test_appending_a_record_already_enrolled_is_refused(cohort, enrolled, tmp_path):
    """The same record appended again (under its own path or another) would store one session
    twice; a different record of the person is appended as before."""
    run_dir, gallery, person = enrolled
    first, second = cohort.records[person][:2]
    common = ("--model", run_dir, "--gallery", gallery, "--id", person, "--append")
    assert_one_line_error(run("enroll", *common, first), "already enrolled from", "nothing stored")
    other_path = tmp_path / "elsewhere"
    other_path.mkdir()
    for part in (Path(first), Path(first).with_suffix(".dat")):
        shutil.copyfile(part, other_path / part.name)
    copy = other_path / Path(first).name
    assert_one_line_error(run("enroll", *common, copy), "already enrolled from", "nothing stored")
    with Gallery.open(gallery) as opened:
        assert len(opened.templates(person)) == 1
    assert run("enroll", *common, second).exit_code == 0
    with Gallery.open(gallery) as opened:
        assert len(opened.templates(person)) == 2
