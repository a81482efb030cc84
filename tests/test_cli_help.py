"""The CLI a newcomer meets (#14): version, help that reads cleanly, commands in the order of the
work, the gallery named the same way everywhere, and `ecgbio train` defaulting to the recipe."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ecgbio.cli import app
from tests.fixtures import build_ptbxl_store

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("ecgbio ")


def test_help_lists_commands_in_the_order_of_the_work_and_flags_without_bool():
    text = runner.invoke(app, ["--help"]).output
    order = ["prepare", "train", "evaluate", "report", "enroll", "identify", "verify", "gallery"]
    positions = [text.index(f"\n  {name} ") for name in order]
    assert positions == sorted(positions), text
    for argv in (["train", "--help"], ["enroll", "--help"], ["gallery", "list", "--help"]):
        help_text = runner.invoke(app, argv).output
        assert "<bool>" not in help_text, argv
    assert "Enrol a person" not in runner.invoke(app, ["enroll", "--help"]).output


def test_gallery_commands_take_the_gallery_as_argument_or_option(tmp_path):
    missing = tmp_path / "none"
    by_arg = runner.invoke(app, ["gallery", "list", str(missing)])
    by_opt = runner.invoke(app, ["gallery", "list", "--gallery", str(missing)])
    assert by_arg.exit_code == by_opt.exit_code == 2 and by_arg.output == by_opt.output
    both = runner.invoke(app, ["gallery", "info", str(missing), "--gallery", str(tmp_path)])
    assert both.exit_code == 2 and "two galleries named" in both.output
    neither = runner.invoke(app, ["gallery", "list"])
    assert neither.exit_code == 2 and "no gallery named" in neither.output


def test_train_defaults_are_the_default_model_s_recipe(tmp_path):
    store = build_ptbxl_store(tmp_path / "s")
    common = [
        "train",
        "--store",
        str(store),
        "--epochs",
        "1",
        "--widths",
        "8,16",
        "--blocks",
        "1,1",
    ]
    common += [
        "--embedding-dim",
        "16",
        "--batch-size",
        "16",
        "--m-per-class",
        "2",
        "--json",
        "--quiet",
    ]
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["model"]["input_norm"] == "none"
    assert config["train"]["augment_stretch"] == 0.08 and config["train"]["augment_shift_s"] == 0.02
    plain = runner.invoke(app, [*common, "--out", str(tmp_path / "p"), "--no-augment"])
    assert plain.exit_code == 0, plain.output  # no time augmentation to refuse without --augment
    train = json.loads((tmp_path / "p" / "config.json").read_text())["train"]
    assert train["augment_stretch"] == 0 and not train["augment"]


def test_everyday_output_says_what_happened(tmp_path):
    """#14 item 8: the wording a newcomer tripped on."""
    from ecgbio.gallery.results import _point_line
    from ecgbio.gallery.thresholds import OperatingPoint
    from ecgbio.prepare import _repair_kind

    far = _point_line(OperatingPoint(0.6307, "far=0.01", 0.01, "model"))
    assert far == "threshold 0.6307: set for 1 % false accepts, from the model's validation persons"
    zero = _point_line(OperatingPoint(0.9, "far=0.001", 0.0, "gallery"))
    assert "FAR 0" not in zero and "no false accept" in zero
    eer = _point_line(OperatingPoint(0.5, "eer", 0.05, "gallery"))
    assert "equal-error rate (5 % false accepts and rejects)" in eer
    assert _repair_kind("constant run of 2048 samples at 0 (cropped)") == (
        "constant run cropped at an edge"
    )
    assert _repair_kind("interpolated 12 NaN samples") == "NaN samples interpolated"
