"""A cold ``ecgbio identify``: process start to answer, the code before issue #15 and now, side by side.

Run from the repository root::

    python -m benchmarks.cold_cli [--baseline REV] [--repeats 7] [--persons 90] [--out FILE]

A door lock or a hospital script that calls the CLI pays for the interpreter, every import, the
model load and the gallery open on each call, not only for the 15 ms of work
(``benchmarks/real_speed.py``). This benchmark times exactly that, as a user would see it: one
``ecgbio identify --gallery G PROBE --json`` process per call, wall time from spawn to exit.

* **before**: the package as it was at ``--baseline`` (default: the last commit before issue
  #15's changes), exported with ``git archive`` into a temporary folder and put first on
  ``PYTHONPATH``, run by this same interpreter and site-packages;
* **now, torch**: this tree with ``--backend torch``;
* **now**: this tree with its defaults (ONNX Runtime when the model ships ``model.onnx``);
* the same three for a record that does not exist (the error path: one line, exit 2).

Calls are interleaved (before, torch, now, before, ...) so that a busy machine slows all of them
alike; the first round warms the page cache and is dropped. One gallery serves all of them: every
ECG-ID person enrolled from their ``rec_1`` by this tree's library (the binding is the same under
both backends and at the baseline). The probe is ``Person_02/rec_2`` (20 s, 500 Hz, two channels),
a genuine probe; every call must name the same top candidate.

Goal (issue #15): cold ``ecgbio identify`` <= 1.0 s on this 2-core machine.
Data: ECG-ID 1.0.0 (ODC-By 1.0, Lugovaya 2005), PhysioNet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ecgbio.io import atomic_write_text
from ecgbio.provenance import REPO, SHARED_DATA, provenance

RESULTS = REPO / "benchmarks" / "results" / "cold_cli.json"
#: the last commit before issue #15 (service, ONNX, fast cold CLI) changed the package
BASELINE = "f44de31"
GOAL_S = 1.0
ECGID = SHARED_DATA / "ecg-id-database-1.0.0"
ENTRY = "import sys; sys.argv[0] = 'ecgbio'; from ecgbio.cli import main; main()"


def export_baseline(rev: str, into: Path) -> Path:
    """The package at ``rev`` (``git archive``), as a folder to put first on ``PYTHONPATH``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "ecgbio"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def enrol_gallery(gallery: Path, persons: int) -> list[str]:
    """Every ECG-ID person (up to ``persons``) enrolled from ``rec_1``, in this process."""
    from ecgbio.embed import Embedder
    from ecgbio.gallery import Gallery
    from ecgbio.gallery.gallery import embed_for_enrolment

    folders = sorted(p for p in ECGID.glob("Person_*") if (p / "rec_1.hea").is_file())[:persons]
    embedder = Embedder(None, threads=1)
    enrolled = []
    g, _ = Gallery.open_or_create(gallery, embedder)
    with g:
        for folder in folders:
            embeddings = embed_for_enrolment(embedder, folder.name, [folder / "rec_1.hea"])
            g.enroll_embeddings(folder.name, embeddings)
            enrolled.append(folder.name)
    return enrolled


def one_call(argv: list[str], pythonpath: str | None) -> tuple[float, int, str]:
    """Wall seconds from spawn to exit, the exit code and stdout of one CLI process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),  # not the repository: only PYTHONPATH or the install decide
        check=False,
    )
    return time.perf_counter() - started, done.returncode, done.stdout


def top_candidate(stdout: str) -> str | None:
    try:
        answer = json.loads(stdout)
    except json.JSONDecodeError:
        return None
    candidates = answer.get("candidates") or []
    return candidates[0].get("person") if candidates else None


def summarise(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 3),
        "min_s": round(ordered[0], 3),
        "runs": len(ordered),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help="git revision of 'before'")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per variant")
    parser.add_argument("--persons", type=int, default=90, help="ECG-ID persons enrolled")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not ECGID.is_dir():
        parser.error(f"ECG-ID not found at {ECGID}")
    probe = ECGID / "Person_02" / "rec_2.hea"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ecgbio-cold-") as tmp:
        work = Path(tmp)
        before = str(export_baseline(args.baseline, work / "baseline"))
        enrolled = enrol_gallery(work / "gallery", args.persons)
        ask = ["identify", "--gallery", str(work / "gallery"), "--json"]
        variants: dict[str, tuple[list[str], str | None]] = {
            "before": ([], before),
            "now_torch": (["--backend", "torch"], None),
            "now": ([], None),
        }
        cases = {"identify": [str(probe)], "missing_file": [str(work / "nope.hea")]}
        times: dict[str, dict[str, list[float]]] = {c: {v: [] for v in variants} for c in cases}
        answers: dict[str, set] = {v: set() for v in variants}
        codes: dict[str, dict[str, set]] = {c: {v: set() for v in variants} for c in cases}
        for round_ in range(args.repeats + 1):
            for case, record in cases.items():
                for name, (extra, pythonpath) in variants.items():
                    wall, code, stdout = one_call([*ask, *extra, *record], pythonpath)
                    codes[case][name].add(code)
                    if case == "identify":
                        answers[name].add(top_candidate(stdout))
                    if round_:  # the first round warms the page cache
                        times[case][name].append(wall)
            print(f"round {round_}/{args.repeats} done", flush=True)
    figures = {
        case: {
            name: {**summarise(t), "exit_codes": sorted(codes[case][name])} for name, t in v.items()
        }
        for case, v in times.items()
    }
    results = {
        **provenance(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "goal_s": GOAL_S,
        "baseline": args.baseline,
        "gallery_persons": len(enrolled),
        "probe": "ECG-ID Person_02/rec_2 (20 s, 500 Hz, enrolled from rec_1)",
        "top_candidate": {name: sorted(map(str, a)) for name, a in answers.items()},
        "figures": figures,
        "note": "wall time of one `ecgbio identify --json` process from spawn to exit, page cache "
        "warm (first round dropped), calls interleaved; OMP_NUM_THREADS=1",
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    for case, by_variant in figures.items():
        for name, f in by_variant.items():
            print(f"{case:>12} {name:>9}: median {f['median_s']:.2f} s, p90 {f['p90_s']:.2f} s")
    return results


if __name__ == "__main__":
    main()
