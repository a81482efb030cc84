"""ONNX Runtime on the shipped model: 1-D convolutions as exported by torch, against the same
network with each one rewritten as a 2-D convolution over a height of 1
(:func:`ecgbio.export.conv1d_as_conv2d`, what ``ecgbio export --onnx`` writes).

Run from the repository root::

    python -m benchmarks.onnx_conv [--repeats 50]

Both files come from one export of the default model's backbone; each is timed on one thread
(ONNX Runtime's ``intra_op_num_threads=1``, as one service worker runs it) for batches of 1, 28
(a 20 s record's beats) and 256 seeded synthetic beats, median of ``--repeats`` runs after a
warm-up, and torch (1 thread) alongside for reference. Writes
``benchmarks/results/onnx_conv.json`` with the hardware.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any
from unittest import mock

import numpy as np

from ecgbio.io import atomic_write_text
from ecgbio.provenance import REPO, provenance

RESULTS = REPO / "benchmarks" / "results" / "onnx_conv.json"
BATCHES = (1, 28, 256)


def median_ms(fn: Any, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(1000 * float(np.median(times)), 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)
    import onnxruntime as ort
    import torch

    from ecgbio import export
    from ecgbio.runs import load_run

    torch.set_num_threads(1)
    run = load_run(None)
    leads, samples = int(run.info["in_leads"]), run.beat.window_samples
    with mock.patch.object(export, "conv1d_as_conv2d", lambda proto: 0):
        as_exported, _, _ = export._to_onnx(run, leads, samples)
    rewritten, _, _ = export._to_onnx(run, leads, samples)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sessions = {
        name: ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        for name, data in (("conv1d_as_exported", as_exported), ("conv2d_rewritten", rewritten))
    }
    rows = []
    for batch in BATCHES:
        beats = export.check_beats(batch, leads, samples)
        row: dict[str, Any] = {"batch": batch}
        outputs = {}
        for name, session in sessions.items():
            feed = {session.get_inputs()[0].name: beats}
            row[f"{name}_ms"] = median_ms(lambda s=session, f=feed: s.run(None, f), args.repeats)
            outputs[name] = session.run(None, feed)[0]
        with torch.no_grad():
            x = torch.from_numpy(beats)
            row["torch_ms"] = median_ms(lambda x=x: run.backbone(x), args.repeats)
        a, b = outputs.values()
        row["max_abs_difference"] = float(np.abs(a - b).max())
        rows.append(row)
        print(json.dumps(row), flush=True)
    results = {
        **provenance(),
        "model": "default (shipped)",
        "threads": 1,
        "repeats": args.repeats,
        "rows": rows,
    }
    atomic_write_text(RESULTS, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
