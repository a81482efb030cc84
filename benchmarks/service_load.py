"""``ecgbio serve`` under load: identify latency and answers/s with 1, 4 and 16 clients, while a
writer enrols people, against galleries of 90 and 10,000 persons.

Run from the repository root::

    python -m benchmarks.service_load [--seconds 15] [--clients 1,4,16] [--sizes 90,10000]

For each gallery size a real server is started (``ecgbio serve`` in its own process, on
127.0.0.1, a bearer token from the environment, its defaults otherwise) and driven over HTTP by
client threads of this process (``httpx``, one keep-alive connection each), which is what a door
lock fleet or a hospital system would do. Every client uploads ECG-ID probes (``rec_2`` of the
enrolled persons, 20 s at 500 Hz, as a WFDB pair: multipart, the ``.hea`` and ``.dat`` as they
are on disk) to ``/v1/identify`` back to back for ``--seconds``. Meanwhile one writer enrols a
new person every ``--enrol-every`` seconds through ``/v1/enroll`` (from ECG-ID ``rec_1`` records,
under new ids); afterwards ``/v1/persons`` must list every enrolment the writer saw succeed
(``lost_enrolments``, must be 0) and every request must have succeeded (``errors``, must be 0).

Gallery of 90: every ECG-ID person enrolled from ``rec_1`` (the service's own ``/v1/enroll``
path's library, in this process, before the server starts). Gallery of 10,000: the same 90 plus
9,910 synthetic templates (random unit vectors: the search cost is what a size changes, and no
real database here has 10,000 persons). Latency is the client's wall time per request (upload,
read, beats, embedding, search, answer), p50/p99 over all requests of a setting.

Goals (issue #15, 2 cores): identify p50 <= 25 ms and >= 60 answers/s with 4 clients on the
90-person gallery; 0 errors and 0 lost enrolments.
Data: ECG-ID 1.0.0 (ODC-By 1.0, Lugovaya 2005), PhysioNet.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ecgbio.io import atomic_write_text
from ecgbio.provenance import REPO, SHARED_DATA, provenance

RESULTS = REPO / "benchmarks" / "results" / "service_load.json"
ECGID = SHARED_DATA / "ecg-id-database-1.0.0"
GOALS = {"p50_ms": 25.0, "answers_per_s_4_clients": 60.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def persons_with(record: str) -> list[Path]:
    return sorted(p for p in ECGID.glob("Person_*") if (p / f"{record}.hea").is_file())


def build_gallery(path: Path, size: int) -> int:
    """ECG-ID persons from ``rec_1`` (+ random templates up to ``size``); the persons enrolled."""
    from ecgbio.embed import Embedder
    from ecgbio.gallery import Gallery
    from ecgbio.gallery.gallery import embed_for_enrolment

    embedder = Embedder(None, threads=2)
    gallery, _ = Gallery.open_or_create(path, embedder)
    with gallery:
        for folder in persons_with("rec_1")[:size]:
            gallery.enroll_embeddings(
                folder.name, embed_for_enrolment(embedder, folder.name, [folder / "rec_1.hea"])
            )
        rng = np.random.default_rng(0)
        for i in range(size - len(gallery)):
            gallery.enroll_vectors(f"synthetic-{i:05d}", rng.standard_normal((1, gallery.dim)))
        return len(gallery)


def wfdb_files(hea: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """A WFDB pair as multipart ``files`` (the field name is ``record``)."""
    dat = hea.with_suffix(".dat")
    return [
        ("record", (hea.name, hea.read_bytes(), "text/plain")),
        ("record", (dat.name, dat.read_bytes(), "application/octet-stream")),
    ]


class Server:
    """``ecgbio serve`` in its own process, until :meth:`stop`."""

    def __init__(self, gallery: Path, token: str, log: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ECGBIO_TOKEN": token}
        self._log = open(log, "w")  # noqa: SIM115 - open for the server's lifetime
        command = [sys.executable, "-m", "ecgbio.cli", "serve", "--gallery", str(gallery)]
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), *extra],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.perf_counter()

    def wait(self, client: Any, timeout: float = 120.0) -> float:
        """Seconds from spawn until ``/health`` answers."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ecgbio serve exited with {self.process.returncode}")
            try:
                if client.get(f"{self.url}/health").status_code == 200:
                    return time.perf_counter() - self.started
            except Exception:  # not listening yet
                time.sleep(0.1)
        raise RuntimeError("ecgbio serve did not answer in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()


def run_setting(url: str, headers: dict, clients: int, seconds: float, writer: dict) -> dict:
    """``clients`` threads identifying for ``seconds``; the writer enrols meanwhile."""
    import httpx

    probes = [wfdb_files(p / "rec_2.hea") for p in persons_with("rec_2")]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(headers=headers, timeout=60) as http:
            i = k
            while not stop.is_set():
                t0 = time.perf_counter()
                response = http.post(f"{url}/v1/identify", files=probes[i % len(probes)])
                latencies[k].append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors.append(f"identify {response.status_code}: {response.text[:200]}")
                i += clients

    def enrol() -> None:
        with httpx.Client(headers=headers, timeout=120) as http:
            while not stop.is_set():
                folder = writer["sources"][writer["next"] % len(writer["sources"])]
                person = f"writer-{writer['next']:04d}"
                writer["next"] += 1
                response = http.post(
                    f"{url}/v1/enroll",
                    data={"person": person},
                    files=wfdb_files(folder / "rec_1.hea"),
                )
                if response.status_code == 200:
                    writer["enrolled"].append(person)
                else:
                    errors.append(f"enroll {response.status_code}: {response.text[:200]}")
                stop.wait(writer["every_s"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    threads.append(threading.Thread(target=enrol))
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    flat = np.array([x for per in latencies for x in per]) * 1000
    return {
        "clients": clients,
        "requests": int(flat.size),
        "answers_per_s": round(flat.size / wall, 1),
        "p50_ms": round(float(np.percentile(flat, 50)), 1) if flat.size else None,
        "p99_ms": round(float(np.percentile(flat, 99)), 1) if flat.size else None,
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per client count")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--sizes", default="90,10000", help="gallery sizes (persons)")
    parser.add_argument("--enrol-every", type=float, default=1.0, help="writer pause, seconds")
    parser.add_argument(
        "--serve-args", default="", help="more `ecgbio serve` options (default: its defaults)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not ECGID.is_dir():
        parser.error(f"ECG-ID not found at {ECGID}")
    import httpx

    started = time.perf_counter()
    token = secrets.token_urlsafe(32)
    headers = {"Authorization": f"Bearer {token}"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="ecgbio-load-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            gallery = Path(tmp) / f"gallery-{size}"
            persons = build_gallery(gallery, size)
            server = Server(
                gallery, token, Path(tmp) / f"serve-{size}.log", args.serve_args.split()
            )
            writer = {
                "sources": persons_with("rec_1"),
                "next": 0,
                "enrolled": [],
                "every_s": args.enrol_every,
            }
            try:
                with httpx.Client(headers=headers, timeout=60) as http:
                    ready_s = server.wait(http)
                    for clients in (int(c) for c in args.clients.split(",")):
                        row = run_setting(server.url, headers, clients, args.seconds, writer)
                        row.update(gallery_persons=persons, server_ready_s=round(ready_s, 2))
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                    listed = {
                        p["name"] for p in http.get(f"{server.url}/v1/persons").json()["persons"]
                    }
                lost = [p for p in writer["enrolled"] if p not in listed]
                for row in rows:
                    if row["gallery_persons"] == persons:
                        row["writer_enrolled"] = len(writer["enrolled"])
                        row["lost_enrolments"] = len(lost)
            finally:
                server.stop()
    results = {
        **provenance(),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "goals": GOALS,
        "seconds_per_setting": args.seconds,
        "serve_options": args.serve_args or "(defaults)",
        "probe": "ECG-ID rec_2 of the enrolled persons (20 s, 500 Hz, two channels) as WFDB "
        "uploads; a writer enrols ECG-ID rec_1 records under new ids meanwhile",
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
