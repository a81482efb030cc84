"""Reports: each figure draws what its name says, the page's images exist, overwrites are refused."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ecgbio.cli import EXIT_ERROR, app
from ecgbio.evaluate import evaluate_run
from ecgbio.report import figures as fig
from ecgbio.report import make_report
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


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs)["src"] or "")


def _images(page: Path) -> list[str]:
    parser = _Images()
    parser.feed(page.read_text())
    parser.close()
    return parser.sources


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_report_of_an_evaluation_shows_every_figure_and_the_table(dirs, tmp_path):
    report = make_report(dirs[0], tmp_path / "r")
    page = Path(report.page)
    sources = _images(page)
    assert set(sources) == {"roc.png", "det.png", "scores.png", "cmc.png", "enrol_beats.png"}
    for src in sources:
        data = (page.parent / src).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    text = page.read_text()
    for heading in ("rank-1", "rank-5", "EER (95 % CI)", "TAR @ FAR 1 %", "TAR @ FAR 0.1 %"):
        assert heading in text
    assert "AUC" in text and "persons" in text and "probes" in text


def test_report_of_a_run_draws_training_curves_and_says_where_scores_come_from(dirs, tmp_path):
    report = make_report(dirs[1], tmp_path / "r")
    assert report.kind == "run" and set(_images(Path(report.page))) == {
        "training.png",
        "enrol_beats.png",
    }
    assert "ecgbio evaluate --model RUN --store STORE --out EVAL" in Path(report.page).read_text()


def test_roc_det_cmc_histogram_draw_the_named_curves():
    pairs = {"all probes": (GEN, IMP), "other-day probes": (GEN[:20], IMP[:200])}
    roc = fig.roc_figure(pairs).axes[0]
    assert roc.get_title() == "ROC" and _labels(roc) == list(pairs)
    assert roc.get_xscale() == "log"
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


def test_training_and_enrol_beats_figures():
    history = pd.DataFrame(
        {"epoch": [1, 2], "loss": [3.0, 2.0], "accuracy": [0.1, 0.5], "val_eer": [0.3, 0.2]}
    )
    loss_ax, rate_ax = fig.training_figure(history).axes
    assert _labels(loss_ax) == ["loss"] and _labels(rate_ax) == ["accuracy", "val_eer"]
    by_k = {
        "all": {"rank1": 0.9, "eer": 0.1},
        "10": {"rank1": 0.8, "eer": 0.2},
        "1": {"rank1": 0.5, "eer": 0.3},
    }
    ax = fig.enrol_beats_figure(by_k).axes[0]
    assert _labels(ax) == ["rank-1", "EER"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "10", "all"]


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
