"""A tampered model or gallery is refused (issue #16): one line ``error: <file>: <problem>``, exit
code 2, never a traceback, and the enrolled gallery exactly as it was.

* the model: a gallery is bound to its model's weights, beat and model config and operating points
  (``thresholds.json``): editing any of them in a copy of the run is refused against the gallery;
  invalid thresholds and a damaged ``config.json`` are refused naming the file;
* the gallery: every meta value is checked on open (type, range, allowed values);
* galleries made before fingerprint version 2 (weights only): checked against the weights and
  their recorded beat config with a warning, and bound to the whole model at the next enrolment;
* a gallery that cannot be created (under a file, a read-only parent) is a clean error;
* a stored template that is not unit-length (scaled, a component edited) is refused wherever
  vectors are read, and a damaged file (bytes flipped in a page) by every command, writes first.

The model is the tiny one of ``tests/test_gallery.py`` on the synthetic cohort; one real-data test
replays the report of the issue with a copy of the shipped model on ECG-ID.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgbio.cli import app
from ecgbio.gallery import Gallery
from ecgbio.runs import DEFAULT_MODEL_DIR
from tests.cli_checks import one_line_error as assert_refused
from tests.conftest import shared
from tests.test_gallery import Cohort, make_cohort

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(gallery: Path) -> dict:
    """What must survive a refusal: the file's bytes, integrity, meta, persons and vectors."""
    db = gallery / "gallery.sqlite"
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        meta = sorted(conn.execute("SELECT key, value FROM meta").fetchall())
        persons = conn.execute("SELECT id, name FROM persons ORDER BY id").fetchall()
        vectors = hashlib.sha256()
        for tid, person, blob in conn.execute(
            "SELECT id, person, vector FROM templates ORDER BY id"
        ):
            vectors.update(f"{tid}:{person}:".encode() + blob)
    finally:
        conn.close()
    assert integrity == [("ok",)]
    return {
        "file": hashlib.sha256(db.read_bytes()).hexdigest(),
        "meta": meta,
        "persons": persons,
        "vectors": vectors.hexdigest(),
    }


def listed(gallery: Path) -> dict:
    result = run("gallery", "list", gallery, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def set_meta(gallery: Path, key: str, value: object, raw: bool = False) -> None:
    """Edit one meta value as someone with sqlite3 would (JSON text, or ``raw`` text)."""
    conn = sqlite3.connect(gallery / "gallery.sqlite")
    with conn:
        if value is None:
            conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            text = value if raw else json.dumps(value)
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, text))
    conn.close()


def get_meta(gallery: Path, key: str) -> object:
    conn = sqlite3.connect(gallery / "gallery.sqlite")
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    conn.close()
    return None if row is None else json.loads(row[0])


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Cohort:
    return make_cohort(tmp_path_factory.mktemp("tamper-cohort"))


class Setup:
    """A copy of the tiny run with thresholds.json, a gallery with one person enrolled from it."""

    def __init__(self, cohort: Cohort, tmp: Path) -> None:
        self.person = cohort.persons[0]
        self.mine, self.second = cohort.records[self.person][:2]
        self.stranger = cohort.stranger_of(self.person)
        # the stranger is rejected at this threshold, the person's own record accepted
        threshold = (cohort.score(self.mine, self.stranger) + 1.0) / 2
        self.table = {
            "eer": {"threshold": threshold, "far": 0.02},
            "far=0.01": {"threshold": threshold},
            "source": "test",
        }
        self.model = cohort.run_with_thresholds(tmp, self.table)
        self.gallery = tmp / "g"
        result = run("enroll", *self.model_args(), "--id", self.person, self.mine)
        assert result.exit_code == 0, result.output

    def model_args(self, model: Path | None = None) -> tuple:
        return ("--model", model or self.model, "--gallery", self.gallery)

    def tampered(self, tmp: Path, name: str = "tampered") -> Path:
        copy = tmp / name
        shutil.copytree(self.model, copy)
        return copy

    def verify(self, record: Path, model: Path | None = None):
        return run("verify", *self.model_args(model), "--claim", self.person, record)

    def every_command(self, model: Path | None = None) -> list[tuple]:
        """Every command that opens the gallery (with the model where it takes one)."""
        g, m = self.gallery, ("--model", model or self.model, "--gallery", self.gallery)
        return [
            ("gallery", "list", g),
            ("gallery", "info", g, "--check"),
            ("identify", *m, self.second),
            ("verify", *m, "--claim", self.person, self.second),
            ("enroll", *m, "--id", "bob", self.stranger),
            ("enroll", *m, "--id", self.person, self.second, "--append"),
            ("gallery", "remove", g, "--id", self.person),
            ("gallery", "calibrate", g),
            ("gallery", "configure", g, "--index", "flat"),
        ]


@pytest.fixture
def setup(cohort, tmp_path) -> Setup:
    return Setup(cohort, tmp_path)


# --------------------------------------------------------------------- the model's binding


def test_a_new_gallery_is_bound_to_the_whole_model(setup):
    info = json.loads(run("gallery", "info", setup.gallery, "--json").stdout)
    assert info["fingerprint_version"] == 2
    binding = get_meta(setup.gallery, "model_binding")
    assert set(binding) == {"weights_sha256", "in_leads", "beat", "model", "thresholds"}
    assert binding["thresholds"] == {k: v for k, v in setup.table.items() if k != "source"}
    assert setup.verify(setup.second).exit_code == 0
    assert setup.verify(setup.stranger).exit_code == 1
    # notes in thresholds.json and the layout of config.json change no score or decision
    same = setup.tampered(setup.gallery.parent, "same")
    edit_json(same / "thresholds.json", lambda t: t.update(source="re-typed", genuine_scores=3))
    (same / "config.json").write_text(json.dumps(json.loads((same / "config.json").read_text())))
    assert setup.verify(setup.second, same).exit_code == 0


@pytest.mark.parametrize(
    ("section", "key", "value", "part"),
    [
        ("beat", "rate", 200, 'beat config (config.json "beat")'),
        ("beat", "before_s", 0.25, 'beat config (config.json "beat")'),
        ("beat", "after_s", 0.3, 'beat config (config.json "beat")'),
        ("beat", "normalize", "beat", 'beat config (config.json "beat")'),
        ("model", "input_norm", "none", 'model config (config.json "model")'),
    ],
)
def test_an_edited_config_json_is_refused_against_the_gallery(setup, section, key, value, part):
    before, people = snapshot(setup.gallery), listed(setup.gallery)
    tampered = setup.tampered(setup.gallery.parent)
    edit_json(tampered / "config.json", lambda c: c[section].__setitem__(key, value))
    for args in setup.every_command(tampered):
        if "--model" in args:
            assert_refused(run(*args), str(setup.gallery), "gallery belongs to model", part)
    assert snapshot(setup.gallery) == before and listed(setup.gallery) == people


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t.update({"far=0.01": {"threshold": -1}, "eer": {"threshold": -1}}),
        lambda t: t["far=0.01"].update(threshold=t["far=0.01"]["threshold"] - 0.2),
        lambda t: t.update({"far=0.001": {"threshold": 0.99}}),  # a point added
        lambda t: t["eer"].update(far=0.5),  # the FAR a decision reports
    ],
)
def test_edited_thresholds_are_refused_against_the_gallery(setup, change):
    """Setting every threshold to -1 used to make an impostor's verify exit 0."""
    before = snapshot(setup.gallery)
    tampered = setup.tampered(setup.gallery.parent)
    edit_json(tampered / "thresholds.json", change)
    result = setup.verify(setup.stranger, tampered)
    assert_refused(result, str(setup.gallery), "operating points (thresholds.json) differs")
    assert_refused(run("identify", *setup.model_args(tampered), setup.stranger), "belongs to")
    assert snapshot(setup.gallery) == before
    assert setup.verify(setup.stranger).exit_code == 1  # the gallery's model still rejects


def test_a_removed_thresholds_json_or_other_weights_are_refused(cohort, setup):
    tampered = setup.tampered(setup.gallery.parent)
    (tampered / "thresholds.json").unlink()
    assert_refused(setup.verify(setup.second, tampered), "operating points (thresholds.json)")
    weights = setup.tampered(setup.gallery.parent, "weights")
    shutil.copy(cohort.other_run / "model.safetensors", weights / "model.safetensors")
    assert_refused(setup.verify(setup.second, weights), "weights (model.safetensors) differs")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '{"far=0.01": {"threshold": -5}}',
            "threshold 'far=0.01' must be a cosine between -1 and 1",
        ),
        ('{"far=0.01": {"threshold": 1.5}}', "must be a cosine between -1 and 1, got 1.5"),
        ('{"eer": {"threshold": NaN}}', "threshold 'eer' must be a finite number"),
        ('{"eer": {"threshold": Infinity}}', "threshold 'eer' must be a finite number"),
        ('{"eer": {"threshold": "0.5"}}', "threshold 'eer' must be a finite number"),
        ('{"eer": {"threshold": true}}', "threshold 'eer' must be a finite number"),
        ("[0.5]", "thresholds must be a JSON object, got list"),
        ('{"far=0.01": 0.7}', "operating point 'far=0.01' must be an object with a threshold"),
        ('{"eer": {"far": 0.05}}', "operating point 'eer' has no threshold"),
        ('{"eer": {"threshold": 0.5, "far": 2}}', "far of operating point 'eer' must be a rate"),
        ('{"far=1%": {"threshold": 0.5}}', "'far=1%' is neither 'eer' nor 'far=X'"),
        ('{"far=2": {"threshold": 0.5}}', "'far=2' is neither 'eer' nor 'far=X'"),
        ("{broken", "unreadable thresholds file"),
    ],
)
def test_invalid_thresholds_are_refused_naming_the_file(setup, text, problem):
    before = snapshot(setup.gallery)
    tampered = setup.tampered(setup.gallery.parent)
    (tampered / "thresholds.json").write_text(text)
    where = f"{tampered / 'thresholds.json'}: "
    assert_refused(setup.verify(setup.stranger, tampered), where, problem)
    fresh = setup.gallery.parent / "fresh"
    enrol = run("enroll", "--model", tampered, "--gallery", fresh, "--id", "x", setup.mine)
    assert_refused(enrol, where, problem)
    assert not fresh.exists() and snapshot(setup.gallery) == before


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda c: c.pop("model"), 'config lacks the "model" section'),
        (lambda c: c.pop("beat"), 'config lacks the "beat" section'),
        (lambda c: c.update(model="x"), 'config section "model" must be a JSON object, got str'),
        (
            lambda c: c["model"].update(widths="abc"),
            "ModelConfig field widths must be a list of integers, got 'abc'",
        ),
        (lambda c: c["model"].update(widths=[8, "x"]), "widths must be a list of integers"),
        (lambda c: c["model"].update(embedding_dim=1.5), "embedding_dim must be an integer"),
        (lambda c: c["model"].update(nonsense=1), "unknown ModelConfig fields: nonsense"),
        (lambda c: c["beat"].update(rate="abc"), "BeatConfig field rate must be an integer"),
        (lambda c: c["beat"].update(rate=7), "rate must be between 50 and 10000 Hz"),
        (lambda c: c["beat"].update(before_s=None), "before_s must be a number, got None"),
        (lambda c: c["beat"].update(leads=[1]), "leads must be a list of names"),
        (lambda c: c["beat"].update(refine_peaks="yes"), "refine_peaks must be true or false"),
        (lambda c: c["train"].update(epochs=-1), "epochs must be >= 1"),
        (lambda c: c.update(in_leads="x"), "\"in_leads\" must be a positive integer, got 'x'"),
        (lambda c: c.pop("n_classes"), 'config lacks "n_classes"'),
        (lambda c: c.update(n_classes=3), "classes.json names"),
    ],
)
def test_a_damaged_config_json_is_a_clean_error(setup, change, problem):
    before = snapshot(setup.gallery)
    tampered = setup.tampered(setup.gallery.parent)
    edit_json(tampered / "config.json", change)
    text = assert_refused(setup.verify(setup.second, tampered), problem)
    assert str(tampered) in text and ("config.json: " in text or "classes.json: " in text)
    assert snapshot(setup.gallery) == before


def test_a_config_json_that_is_not_an_object(setup):
    tampered = setup.tampered(setup.gallery.parent)
    (tampered / "config.json").write_text("[1, 2]")
    assert_refused(
        setup.verify(setup.second, tampered), f"{tampered / 'config.json'}: corrupt config"
    )


# -------------------------------------------------------------------------- gallery meta data


META_EDITS = [
    ("template_mode", "bogus", "expected one of each, mean"),
    ("index_kind", "bogus", "expected one of auto, flat, hnsw, ivf"),
    ("generation", "abc", "expected a count >= 0"),
    ("generation", -1, "expected a count >= 0"),
    ("generation", 1.5, "expected a count >= 0"),
    ("dim", "x", "expected a template size"),
    ("dim", 0, "expected a template size"),
    ("schema_version", "1", "expected a schema version"),
    ("uuid", 7, "expected 32 hexadecimal digits"),
    ("fingerprint", "abc", "expected a sha256"),
    ("fingerprint_version", 0, "expected 1 to 2"),
    ("fingerprint_version", 3, "newer than this ecgbio understands"),
    ("model_binding", {"weights_sha256": "x"}, "expected an object with"),
    ("beat_config", {"rate": "x"}, "BeatConfig field rate must be an integer"),
    ("beat_config", [1], "expected a beat configuration"),
    ("model_run", 5, "expected a run directory"),
    ("calibration", "x", "expected a calibration"),
    ("calibration", {"points": {"far=0.01": {"threshold": "x"}}}, "must be a finite number"),
    ("calibration", {"points": [1]}, "points: thresholds must be a JSON object"),
    ("calibration", {"points": {"eer": {"threshold": -3}}}, "must be a cosine between -1 and 1"),
    (
        "calibration",
        {"points": {"eer": {"threshold": 0.5}}, "eer": "x", "genuine": 1, "impostor": 1},
        "'calibration' has an invalid generation, eer",
    ),
]


@pytest.mark.parametrize(("key", "value", "problem"), META_EDITS)
def test_edited_gallery_meta_is_refused_and_left_alone(setup, key, value, problem):
    set_meta(setup.gallery, key, value)
    before = snapshot(setup.gallery)
    db = setup.gallery / "gallery.sqlite"
    for args in setup.every_command():
        text = assert_refused(run(*args), f"{db}: ", problem)
        assert f"'{key}'" in text or "fingerprint version" in text, text
    assert snapshot(setup.gallery) == before


def test_meta_that_is_not_json_or_disagrees_with_itself(setup):
    db = setup.gallery / "gallery.sqlite"
    original = get_meta(setup.gallery, "model_binding")
    cases = [
        (("template_mode", "{not json"), "meta 'template_mode' is not JSON"),
        (("generation", None), "meta lacks generation"),
    ]
    for (key, raw), problem in cases:
        kept = get_meta(setup.gallery, key)
        set_meta(setup.gallery, key, raw, raw=True)
        before = snapshot(setup.gallery)
        for args in setup.every_command()[:4]:
            assert_refused(run(*args), f"{db}: ", problem)
        assert snapshot(setup.gallery) == before
        set_meta(setup.gallery, key, kept)
    # a binding edited to fit a tampered model no longer matches the fingerprint
    set_meta(setup.gallery, "model_binding", {**original, "thresholds": None})
    assert_refused(run("gallery", "list", setup.gallery), "'model_binding' does not match")
    set_meta(setup.gallery, "model_binding", original)
    set_meta(setup.gallery, "beat_config", {**original["beat"], "rate": 200})
    assert_refused(run("gallery", "list", setup.gallery), "'beat_config' differs")
    set_meta(setup.gallery, "beat_config", original["beat"])
    assert listed(setup.gallery)["persons"][0]["name"] == setup.person  # restored: all fine
    assert setup.verify(setup.second).exit_code == 0


def test_a_calibrated_gallery_keeps_working_and_its_calibration_is_checked(setup, cohort):
    for i, person in enumerate(cohort.persons[1:5]):
        records = cohort.records[person][:2]
        assert run("enroll", *setup.model_args(), "--id", f"p{i}", *records).exit_code == 0
    appended = run("enroll", *setup.model_args(), "--id", setup.person, setup.second, "--append")
    assert appended.exit_code == 0, appended.output
    calibrated = run("gallery", "calibrate", setup.gallery, "--max-eer", "1", "--min-genuine", "1")
    if calibrated.exit_code != 0:
        pytest.skip(f"the tiny cohort does not calibrate: {calibrated.output}")
    assert setup.verify(setup.second).exit_code in (0, 1)
    calibration = get_meta(setup.gallery, "calibration")
    set_meta(setup.gallery, "calibration", {**calibration, "template_mode": "mean"})
    assert_refused(run("gallery", "info", setup.gallery), "'calibration' has an invalid template")


# ------------------------------------------------------ edited templates, a damaged file


def edit_vector(gallery: Path, change) -> None:
    """Rewrite the first stored template as someone with sqlite3 and numpy would."""
    conn = sqlite3.connect(gallery / "gallery.sqlite")
    with conn:
        tid, blob = conn.execute("SELECT id, vector FROM templates ORDER BY id").fetchone()
        vector = change(np.frombuffer(blob, "<f4").astype(np.float64))
        blob = np.asarray(vector, "<f4").tobytes()
        conn.execute("UPDATE templates SET vector = ? WHERE id = ?", (blob, tid))
    conn.close()


def with_first(value: float):
    return lambda v: np.concatenate([[value], v[1:]])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        pytest.param(lambda v: v * 20, "has length 20, not 1", id="times-20"),
        pytest.param(with_first(50.0), "has length 50.0", id="component-50"),
        pytest.param(lambda v: v * 1.001, "has length 1.001, not 1", id="times-1.001"),
        pytest.param(lambda v: v * 0.5, "has length 0.5, not 1", id="halved"),
        pytest.param(with_first(float("nan")), "holds non-finite values", id="nan"),
    ],
)
def test_a_template_that_is_not_unit_length_is_refused(setup, change, problem):
    """Multiplying bob's template by 20 in SQLite made verify accept a stranger (score 0.899),
    one component set to 50 gave a "cosine" of 2.8, and ``gallery info --check`` said fine."""
    edit_vector(setup.gallery, change)
    before, db, g = snapshot(setup.gallery), setup.gallery / "gallery.sqlite", setup.gallery
    m = setup.model_args()
    for args in (
        ("identify", *m, setup.stranger),
        ("verify", *m, "--claim", setup.person, setup.stranger),
        ("verify", *m, "--claim", setup.person, setup.second),
        ("gallery", "info", g, "--check"),
        ("gallery", "calibrate", g),
    ):
        assert_refused(run(*args), f"{db}: ", "was edited", f"of person '{setup.person}'", problem)
    assert snapshot(setup.gallery) == before


def test_float32_round_off_is_not_an_edit(setup):
    edit_vector(setup.gallery, lambda v: v * (1 + 2e-6))
    assert setup.verify(setup.second).exit_code == 0
    assert run("gallery", "info", setup.gallery, "--check").exit_code == 0


def flip_in_persons_page(gallery: Path, what: str) -> None:
    """Flip bits inside the persons table's page, as a failing disk or a bad copy would: the
    first row's record header (the row no longer parses), or one bit of a name (still a valid
    name, another one: only the unique index on names disagrees)."""
    db = gallery / "gallery.sqlite"
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'persons'").fetchone()
    name = conn.execute("SELECT name FROM persons ORDER BY id").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    page = (root[0] - 1) * page_size
    cell = page + int.from_bytes(data[page + 8 : page + 10], "big")  # the first row's cell
    if what == "header":
        # cell: payload size, rowid, then the record: its header size (1 + 4 columns' types)
        assert data[cell + 2] == 5, data[cell : cell + 8]
        data[cell + 2] ^= 0xFF
    else:
        data[data.index(name.encode(), cell, page + page_size)] ^= 0x01
    db.write_bytes(data)


def test_a_damaged_gallery_file_is_refused_by_every_command_and_not_written(setup):
    """Bytes flipped in the persons page: ``gallery list`` refused the file, but identify,
    verify and ``info --check`` used it, and enroll and remove wrote into it."""
    flip_in_persons_page(setup.gallery, "header")
    db = setup.gallery / "gallery.sqlite"
    before = db.read_bytes()
    for args in setup.every_command():
        text = assert_refused(run(*args), f"{db}: ", "corrupt", "malformed")
        if args[0] == "enroll" or args[1] in ("remove", "configure"):
            assert "quick_check" in text and "nothing was written" in text, text
    assert_refused(run("gallery", "calibrate", setup.gallery, "--clear"), "nothing was written")
    assert db.read_bytes() == before


def test_info_check_runs_the_full_integrity_check(setup):
    """A flipped bit in a name passes quick_check (the row still parses) and ``gallery list``
    shows the wrong name; the full integrity_check compares the name index with the table."""
    flip_in_persons_page(setup.gallery, "name")
    db = setup.gallery / "gallery.sqlite"
    result = run("gallery", "info", setup.gallery, "--check", "--json")
    assert_refused(
        result,
        f"{db}: gallery file is corrupt (integrity_check",
        "missing from index",
        only_output=True,
    )


def test_writes_run_quick_check_once_per_opened_gallery(setup):
    """quick_check reads the whole file (10-20 ms at 10,000 persons): once per opened gallery,
    before its first write, not on every write of a long-lived one (the HTTP service)."""
    with Gallery.open(setup.gallery) as gallery:
        statements: list[str] = []
        gallery.store.conn.set_trace_callback(statements.append)
        gallery.configure(index="flat")
        gallery.configure(index="auto")
        gallery.clear_calibration()
    assert sum("quick_check" in s for s in statements) == 1, statements


# ----------------------------------------------------------- galleries made before version 2


def make_old(gallery: Path, weights_sha256: str) -> None:
    """What a gallery made before fingerprint version 2 holds: the weights' sha256 only."""
    set_meta(gallery, "model_binding", None)
    set_meta(gallery, "fingerprint_version", None)
    set_meta(gallery, "fingerprint", weights_sha256)


def test_an_old_gallery_is_checked_warned_about_and_upgraded_at_its_next_enrolment(cohort, setup):
    binding = get_meta(setup.gallery, "model_binding")
    make_old(setup.gallery, binding["weights_sha256"])
    assert (
        json.loads(run("gallery", "info", setup.gallery, "--json").stdout)["fingerprint_version"]
        == 1
    )
    accepted = setup.verify(setup.second)
    assert accepted.exit_code == 0, accepted.output
    assert "warning: this gallery was made by an older ecgbio" in accepted.stdout
    assert setup.verify(setup.stranger).exit_code == 1

    before = snapshot(setup.gallery)
    rate = setup.tampered(setup.gallery.parent, "rate")  # its recorded beat config still binds
    edit_json(rate / "config.json", lambda c: c["beat"].update(rate=200))
    assert_refused(setup.verify(setup.second, rate), 'beat config (config.json "beat") differs')
    assert_refused(setup.verify(setup.second, cohort.other_run), "weights (model.safetensors)")
    enrol = run("enroll", *setup.model_args(rate), "--id", "bob", setup.stranger)
    assert_refused(enrol, "beat config")
    assert snapshot(setup.gallery) == before  # refusals never upgrade

    upgraded = run("enroll", *setup.model_args(), "--id", "bob", setup.stranger)
    assert upgraded.exit_code == 0, upgraded.output
    assert "note: gallery upgraded to fingerprint version 2" in upgraded.stdout
    assert get_meta(setup.gallery, "fingerprint_version") == 2
    assert get_meta(setup.gallery, "model_binding") == binding
    quiet = setup.verify(setup.second)
    assert quiet.exit_code == 0 and "warning" not in quiet.stdout
    thresholds = setup.tampered(setup.gallery.parent, "thresholds")  # now bound to these too
    edit_json(thresholds / "thresholds.json", lambda t: t["far=0.01"].update(threshold=-1))
    assert_refused(setup.verify(setup.stranger, thresholds), "operating points")


# ------------------------------------------------------------------- a gallery not creatable


def test_a_gallery_under_a_file_cannot_be_created(setup, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    target = afile / "g"
    result = run("enroll", "--model", setup.model, "--gallery", target, "--id", "x", setup.mine)
    assert_refused(result, f"{target}: cannot create gallery here: {afile} is a file")
    assert afile.read_text() == "mine"


def test_permission_denied_is_a_clean_error_even_as_root(setup, tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    target = tmp_path / "ro" / "g"
    result = run("enroll", "--model", setup.model, "--gallery", target, "--id", "x", setup.mine)
    assert_refused(result, f"{target}: cannot create gallery here: permission denied")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores file permissions"
)
def test_a_gallery_under_a_read_only_parent_cannot_be_created(setup, tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        target = parent / "g"
        result = run("enroll", "--model", setup.model, "--gallery", target, "--id", "x", setup.mine)
        assert_refused(result, f"{target}: cannot create gallery here: permission denied")
        assert not target.exists()
    finally:
        parent.chmod(0o700)


# ------------------------------------------------------- the report of the issue, on ECG-ID


@pytest.mark.realdata
def test_a_tampered_copy_of_the_default_model_is_refused_on_ecgid(tmp_path):
    root = shared("ecg-id-database-1.0.0")
    model, gallery = tmp_path / "model", tmp_path / "g"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    common = ("--model", model, "--gallery", gallery)
    mine, impostor = root / "Person_01" / "rec_2.hea", root / "Person_02" / "rec_1.hea"
    assert run("enroll", *common, "--id", "p1", root / "Person_01" / "rec_1.hea").exit_code == 0
    assert run("verify", *common, "--claim", "p1", mine).exit_code == 0
    assert run("verify", *common, "--claim", "p1", impostor).exit_code == 1
    before = snapshot(gallery)
    original = (model / "config.json").read_text()
    edit_json(model / "config.json", lambda c: c["beat"].update(rate=200))
    assert_refused(run("verify", *common, "--claim", "p1", mine), "beat config")
    (model / "config.json").write_text(original)
    edit_json(
        model / "thresholds.json",
        lambda t: [e.update(threshold=-1) for e in t.values() if isinstance(e, dict)],
    )
    assert_refused(run("verify", *common, "--claim", "p1", impostor), "operating points")
    assert snapshot(gallery) == before
