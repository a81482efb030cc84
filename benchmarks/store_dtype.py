"""float16 or float32 for the beat store: rounding error against the source's resolution, size, speed.

Run: ``python -m benchmarks.store_dtype [--data ../shared/data]``. Uses the real PTB-XL subset
(lead I, 100 Hz) and ECG-ID (lead I, 500 Hz) when present; writes ``benchmarks/results/store_dtype.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ecgbio.beats import beats_from_file
from ecgbio.config import BeatConfig
from ecgbio.provenance import SHARED_DATA, provenance
from ecgbio.sources.folder import folder_records
from ecgbio.sources.ptbxl import ptbxl_records


def measure(name: str, paths: list[Path], config: BeatConfig, adc_uv: float) -> dict:
    waves = []
    for path in paths:
        try:
            waves.append(beats_from_file(path, config).waves)
        except Exception:  # rejected records are not the point here
            continue
    x32 = np.concatenate(waves).astype(np.float32)
    x16 = x32.astype(np.float16).astype(np.float32)
    err_uv = np.abs(x32 - x16) * 1000.0
    rng = np.random.default_rng(0)
    result = {
        "dataset": name,
        "beats": len(x32),
        "adc_resolution_uv": adc_uv,
        "max_abs_error_uv": float(err_uv.max()),
        "p99_abs_error_uv": float(np.percentile(err_uv, 99)),
        "rms_signal_uv": float(np.sqrt((x32**2).mean()) * 1000.0),
    }
    for dtype in (np.float32, np.float16):
        path = Path(f"/tmp/ecgbio-dtype-{np.dtype(dtype).name}.npy")
        np.save(path, x32.astype(dtype))
        mm = np.load(path, mmap_mode="r")
        idx = rng.integers(0, len(mm), size=(200, 256))
        start = time.perf_counter()
        for batch in idx:
            np.asarray(mm[np.sort(batch)], dtype=np.float32)
        elapsed = time.perf_counter() - start
        result[f"{np.dtype(dtype).name}_bytes"] = path.stat().st_size
        result[f"{np.dtype(dtype).name}_random_read_beats_per_s"] = round(idx.size / elapsed)
        path.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--records", type=int, default=300, help="records per dataset")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results/store_dtype.json"
    )
    args = parser.parse_args()
    rows = []
    ptbxl = args.data / "ptb-xl-subset"
    if ptbxl.exists():
        paths = [s.path for s in ptbxl_records(ptbxl, rate=100)[: args.records]]
        rows.append(measure("PTB-XL subset, lead I, 100 Hz", paths, BeatConfig(rate=100), 1.0))
    ecgid = args.data / "ecg-id-database-1.0.0"
    if ecgid.exists():
        paths = [s.path for s in folder_records(ecgid)[: args.records]]
        rows.append(measure("ECG-ID, lead I, 500 Hz", paths, BeatConfig(rate=500), 5.0))
    if not rows:
        raise SystemExit(f"no real data under {args.data}")
    out = {**provenance(), "data": str(args.data), "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
