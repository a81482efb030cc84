"""benchmarks/real_speed.py runs end to end on tiny synthetic stand-ins and skips without data.

Synthetic figures are smoke output only: the results file goes to tmp_path, never to
benchmarks/results.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import real_speed
from benchmarks.gallery_search import default_model
from ecgbio.sources.synthetic import write_synthetic_cohort
from tests.conftest import simulate_ecg, write_wfdb


def test_skips_cleanly_without_data(tmp_path, capsys):
    rc = real_speed.main(["--ptbxl", str(tmp_path / "no"), "--ecgid", str(tmp_path / "none")])
    assert rc == 0
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "real_speed.json").exists()


@pytest.mark.slow
def test_quick_run_on_synthetic_stand_ins(tmp_path, capsys):
    # PTB-XL-shaped: 2 persons with 2 records (they validate), 4 with 1 (they train)
    ptbxl = write_synthetic_cohort(
        tmp_path / "ptbxl", n_persons=6, records_per_person=[2, 2, 1, 1, 1, 1], rate=500, n_leads=1
    )
    # ECG-ID-shaped: Person_XX/rec_N, 500 Hz, 12 s (the probe is cropped to 10 s)
    ecgid = tmp_path / "ecgid"
    for p in range(3):
        for r in range(2):
            signal = simulate_ecg(12.0, 500, heart_rate=60 + 8 * p + 3 * r, seed=10 * p + r)
            write_wfdb(ecgid / f"Person_{p + 1:02d}", f"rec_{r + 1}", signal, 500, ["ECG I"])
    (tmp_path / "model").mkdir()
    run, _, _ = default_model(tmp_path / "model")  # untrained, default architecture and beats
    out = tmp_path / "real_speed.json"

    rc = real_speed.main(
        [
            "--quick",
            "--model",
            str(run),
            "--ptbxl",
            str(ptbxl),
            "--ecgid",
            str(ecgid),
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--no-cold",
            "--out",
            str(out),
        ]
    )

    assert rc == 0
    printed = capsys.readouterr().out
    assert "identify end to end" in printed and "hardware" in printed
    result = json.loads(out.read_text())
    for key in ("command", "hardware", "git_commit", "versions", "prepare", "identify", "training"):
        assert key in result
    assert [r["source"] for r in result["prepare"]] == ["ptbxl", "ecgid"]
    assert result["prepare"][0]["records"] == 8 and result["prepare"][1]["records"] == 6
    assert all(r["records_per_s"] > 0 and r["beats_per_s"] > 0 for r in result["prepare"])
    ident = result["identify"]
    assert ident["gallery_persons"] == 3 and ident["threads"] == 1
    assert set(ident["probes"]) == {"ecgid", "ptbxl"}
    probe = ident["probes"]["ecgid"]
    assert probe["record_s"] == pytest.approx(10.0, abs=0.05)
    assert set(probe["ms"]) == set(real_speed.PARTS)
    assert all(v["median_ms"] > 0 for v in probe["ms"].values())
    assert ident["model_load_s"] > 0 and ident["gallery_open_s"] > 0
    assert result["training"]["beats_per_s"] > 0 and result["training"]["epochs"] == 1
