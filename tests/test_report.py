"""Reports: each figure draws what its name says, the page embeds its images (index.html alone is the
report), its words are a reader's (headers, enrolment beats, normalisation), overwrites are refused."""

from __future__ import annotations

import base64
import json
import re
import shutil
import stat
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.evaluate import evaluate_run
from ecgbio.report import build, make_report
from ecgbio.report import figures as fig
from tests.cli_checks import one_line_error
from tests.eval_fixtures import build_unseen_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RNG = np.random.default_rng(0)
GEN, IMP = RNG.normal(0.6, 0.15, 40), RNG.normal(0.0, 0.15, 400)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(evaluation dir, run dir) of a tiny synthetic run."""
    tmp = tmp_path_factory.mktemp("report")
    store, run = build_unseen_run(tmp)
    evaluate_run(run, store, "enrol-probe", out=tmp / "eval", ci_boot=50)
    return tmp / "eval", run


DATA_URI = "data:image/png;base64,"


class _Page(HTMLParser):
    """The page's images (alt -> src) and table headings."""

    def __init__(self) -> None:
        super().__init__()
        self.images: dict[str, str] = {}
        self.headings: list[str] = []
        self._in_th = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images[dict(attrs)["alt"] or ""] = dict(attrs)["src"] or ""
        self._in_th = tag == "th"

    def handle_endtag(self, tag: str) -> None:
        self._in_th = False

    def handle_data(self, data: str) -> None:
        if self._in_th:
            self.headings.append(data)


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text())
    parser.close()
    return parser


def _images(page: Path) -> dict[str, str]:
    return _parse(page).images


def _png(src: str) -> bytes:
    """The PNG an embedded image holds."""
    assert src.startswith(DATA_URI), src[:40]
    return base64.b64decode(src[len(DATA_URI) :], validate=True)


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_report_of_an_evaluation_shows_every_figure_and_the_table(dirs, tmp_path):
    report = make_report(dirs[0], tmp_path / "r")
    page = Path(report.page)
    images = _images(page)
    assert set(images) == {"ROC", "DET", "Score distributions", "CMC", "Enrolment beats"}
    assert report.pictures == ["roc.png", "det.png", "scores.png", "cmc.png", "enrol_beats.png"]
    for name, src in zip(report.pictures, images.values(), strict=True):
        data = _png(src)  # embedded: the page needs no other file
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert (page.parent / name).read_bytes() == data  # and the PNG is written beside it
        assert stat.S_IMODE((page.parent / name).stat().st_mode) == 0o600
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    text = page.read_text()
    assert not re.search(r"src=[\"'][^\"']*\.png", text)
    headings = _parse(page).headings
    assert headings == [
        "probe set",
        "rank-1",
        "rank-5",
        "EER (95 % CI)",
        "TAR @ FAR 1 %",
        "TAR @ FAR 0.1 %",
        "AUC",
        "persons",
        "probe count",
    ]
    assert len(set(headings)) == len(headings)
    assert "<b>enrol_beats</b>: all beats" in text and "enrol_beats</b>: 0" not in text
    assert "Scores: raw cosine scores (no normalisation)." in text
    assert "none normalisation" not in text


def test_index_html_alone_is_the_whole_report(dirs, tmp_path):
    report = make_report(dirs[0], tmp_path / "r")
    alone = tmp_path / "copied" / "index.html"
    alone.parent.mkdir()
    shutil.copy(report.page, alone)  # copied without its PNGs
    images = _images(alone)
    assert len(images) == len(report.pictures) == 5
    for src in images.values():
        assert _png(src).startswith(PNG_MAGIC)


def test_normalisations_are_named_for_a_reader():
    assert build.norm_name("none") == "raw cosine scores (no normalisation)"
    assert build.norm_name("z").startswith("z-norm")
    assert build.norm_name("t").startswith("t-norm")
    assert build.norm_name("s").startswith("s-norm")
    assert build.norm_name("as").startswith("adaptive s-norm")
    assert build.enrol_beats_name(0) == "all beats"
    assert build.enrol_beats_name(5) == "first 5 beats of the enrolment record"


def test_report_of_a_run_draws_training_curves_and_says_where_scores_come_from(dirs, tmp_path):
    report = make_report(dirs[1], tmp_path / "r")
    assert report.kind == "run" and set(_images(Path(report.page))) == {
        "Training curves",
        "Enrolment beats",
    }
    assert report.pictures == ["training.png", "enrol_beats.png"]
    assert "ecgbio evaluate --model RUN --store STORE --out EVAL" in Path(report.page).read_text()


def test_roc_det_cmc_histogram_draw_the_named_curves():
    pairs = {"all probes": (GEN, IMP), "other-day probes": (GEN[:20], IMP[:200])}
    roc = fig.roc_figure(pairs).axes[0]
    assert roc.get_title() == "ROC" and _labels(roc) == list(pairs)
    assert roc.get_xscale() == "log"
    roc_ticks = [t.get_text() for t in roc.get_xticklabels() if t.get_text()]
    assert {"1 %", "10 %", "100 %"} <= set(roc_ticks)
    assert all(t.endswith(" %") and "^" not in t for t in roc_ticks), roc_ticks
    assert roc.get_xlim()[0] == pytest.approx(0.1)  # IMP has 400 scores: FAR from 0.125 %
    det = fig.det_figure(pairs).axes[0]
    assert det.get_title() == "DET" and _labels(det) == [*pairs, "FAR = FRR"]
    ticks = [t.get_text() for t in det.get_xticklabels()]
    assert ticks == [f"{t:g}" for t in fig.DET_TICKS] and "(%)" in det.get_xlabel()
    # probit axes: the 1 % tick sits at the normal deviate of 0.01
    assert det.get_xticks()[list(fig.DET_TICKS).index(1)] == pytest.approx(-2.3263, abs=1e-3)
    hist = fig.histogram_figure(GEN, IMP, 0.3).axes[0]
    assert hist.get_title() == "Genuine and impostor scores"
    assert hist.get_lines()[0].get_xdata()[0] == 0.3  # the threshold line
    labels = sorted(hist.get_legend_handles_labels()[1])
    assert labels == ["EER threshold 0.3", "genuine (40)", "impostor (400)"]
    cmc = fig.cmc_figure({"all probes": np.array([0.5, 0.8, 1.0])}).axes[0]
    assert cmc.get_title() == "CMC" and list(cmc.get_lines()[0].get_ydata()) == [50, 80, 100]
    wide = fig.cmc_figure({"all probes": np.linspace(0.5, 1.0, 120)}).axes[0]
    ranks = [t.get_text() for t in wide.get_xticklabels() if t.get_text()]
    assert ranks == ["1", "2", "5", "10", "20", "50", "100"]


def test_training_and_enrol_beats_figures():
    history = pd.DataFrame(
        {"epoch": [1, 2], "loss": [3.0, 2.0], "accuracy": [0.1, 0.5], "val_eer": [0.3, 0.2]}
    )
    loss_ax, rate_ax = fig.training_figure(history).axes
    assert _labels(loss_ax) == ["loss"] and _labels(rate_ax) == ["training accuracy", "val EER"]
    by_k = {
        "all": {"rank1": 0.9, "eer": 0.1},
        "10": {"rank1": 0.8, "eer": 0.2},
        "1": {"rank1": 0.5, "eer": 0.3},
    }
    ax = fig.enrol_beats_figure(by_k).axes[0]
    assert _labels(ax) == ["rank-1", "EER"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "all"]


def test_saturated_validation_curves_are_told_apart_and_named(tmp_path):
    """The demo's validation figures sit at 100 % (EER 0 %) at every epoch: each overlapping
    line has its own marker and style, and the legend and the caption say 'saturated'."""
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [3.0, 2.0, 1.5],
            "accuracy": [0.1, 0.5, 0.6],
            "val_rank1": [1.0, 1.0, 1.0],
            "val_rank5": [1.0, 1.0, 1.0],
            "val_eer": [0.0, 0.0, 0.0],
            "val_auc": [1.0, 1.0, 1.0],
            "val_pairs_rank1": [0.9, 1.0, 1.0],
            "val_pairs_eer": [0.1, 0.05, 0.0],
        }
    )
    assert fig.saturated_curves(history) == ["val rank-1", "val rank-5", "val AUC", "val EER"]
    rate_ax = fig.training_figure(history).axes[1]
    lines = {line.get_label(): line for line in rate_ax.get_lines()}
    assert set(lines) == {
        "training accuracy",
        "val rank-1 (saturated at 100 %)",
        "val rank-1, record pairs",
        "val rank-5 (saturated at 100 %)",
        "val AUC (saturated at 100 %)",
        "val EER (saturated at 0 %)",
        "val EER, record pairs",
    }
    styles = {(ln.get_marker(), ln.get_linestyle(), ln.get_linewidth()) for ln in lines.values()}
    assert len(styles) == len(lines)  # no two lines drawn alike
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text('{"test": {}}')
    history.to_csv(run / "history.csv", index=False)
    text = Path(make_report(run, tmp_path / "r").page).read_text()
    assert "Saturated (val rank-1, val rank-5, val AUC, val EER)" in text
    assert "every (earlier, later) record pair" in text


def test_report_refuses_to_overwrite_unless_asked(dirs, tmp_path):
    runner = CliRunner()
    out = str(tmp_path / "r")
    assert runner.invoke(app, ["report", str(dirs[0]), "--out", out]).exit_code == 0
    again = runner.invoke(app, ["report", str(dirs[0]), "--out", out])
    assert again.exit_code == EXIT_ERROR
    assert again.output.strip().splitlines() == [
        f"error: {out}: a report already exists here (use --overwrite (overwrite=True in Python) to "
        "replace it)"
    ]
    forced = runner.invoke(app, ["report", str(dirs[0]), "--out", out, "--overwrite", "--json"])
    assert forced.exit_code == 0 and '"pictures"' in forced.output


def test_report_of_a_missing_dir_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert result.exit_code == EXIT_ERROR
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'nope'}: no such evaluation or run directory"
    ]
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(app, ["report", str(tmp_path / "empty")])
    assert empty.exit_code == EXIT_ERROR and "no metrics.json" in empty.output


def test_report_of_malformed_files_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "metrics.json").write_text('{"test": 5}')
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == EXIT_ERROR
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "malformed evaluation files" in lines[0], result.output


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


def _arrays(**change: object):
    """Rewrite scores.npz with some arrays replaced (None: left out)."""

    def damage(path: Path) -> None:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays.update(change)
        np.savez(path, **{k: v for k, v in arrays.items() if v is not None})

    return damage


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (_truncate, ["unreadable scores file"]),
        (_arrays(genuine=np.array([0.5, np.nan])), ["genuine scores contain 1 NaN"]),
        (_arrays(genuine=np.zeros(0)), ["no genuine scores", "empty"]),
        (_arrays(impostor=np.ones((3, 3))), ["impostor scores must be a 1-D array"]),
        (_arrays(genuine=np.array(["a", "b"])), ["genuine scores must be numbers"]),
        (_arrays(eer_threshold=np.ones(3)), ["eer_threshold must be one number"]),
        (
            _arrays(other_day_genuine=GEN, other_day_impostor=IMP),
            ["other-day scores but lacks other_day_cmc"],
        ),
        (_directory, ["scores file is not a file"]),
        (Path.unlink, ["missing", "ROC, DET, score histogram and CMC"]),
    ],
    ids=["truncated", "nan", "empty", "2d", "text", "threshold", "other-day", "dir", "missing"],
)
def test_a_damaged_scores_file_is_one_line_naming_it(dirs, tmp_path, damage, fragments):
    """Was: unexpected BadZipFile, messages without the file, or (missing, a directory) exit 0
    with the enrolment figure alone. A gallery-probe evaluation always writes scores.npz, so a
    report without it would pass off a damaged folder as complete."""
    src = tmp_path / "eval"
    shutil.copytree(dirs[0], src, ignore=shutil.ignore_patterns("report"))
    damage(src / "scores.npz")
    result = CliRunner().invoke(app, ["report", str(src), "--out", str(tmp_path / "r")])
    one_line_error(result, *fragments, path=src / "scores.npz")
    assert not (tmp_path / "r" / "index.html").exists()


def test_an_evaluation_without_comparison_scores_reports_without_them(dirs, tmp_path):
    """A classification evaluation (no EER: `seed`) has no scores.npz, and needs none."""
    src = tmp_path / "eval"
    shutil.copytree(dirs[0], src, ignore=shutil.ignore_patterns("report", "scores.npz"))
    metrics = json.loads((src / "metrics.json").read_text())
    (src / "metrics.json").write_text(json.dumps({"protocol": "seed", "accuracy": 0.9}))
    assert "eer" in metrics
    report = make_report(src, tmp_path / "r")
    assert report.pictures == []
