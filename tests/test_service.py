"""``ecgbio serve``: the real server (a subprocess) over HTTP, with the shipped default model.

One server runs for the module (``ecgbio serve --port 0`` with a token file): every endpoint with
WFDB pairs, EDF files and JSON samples from a synthetic cohort (real ECG-ID records where
../shared/data has them), the token check, bad uploads (4xx, one line, gallery unchanged),
parallel identify while enrolling, and a CLI enrolment into the same gallery seen by the server.
Refusals to start run the command in-process: they happen before the model loads.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import wfdb
from typer.testing import CliRunner

from ecgbio.cli import app as cli_app
from ecgbio.sources.synthetic import write_synthetic_cohort
from tests.conftest import REPO, shared

TOKEN = "test-token-0123456789abcdefghij"
MAX_UPLOAD_MB = 1
runner = CliRunner()


@dataclass
class Server:
    url: str
    gallery: Path
    process: subprocess.Popen
    log: list[str]
    tmp: Path  # the server's TMPDIR: where uploads are staged
    verify: ssl.SSLContext | bool = True

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120, verify=self.verify)

    def stop(self) -> None:
        """SIGINT, as Ctrl-C: uvicorn finishes the requests in flight, the gallery is closed."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
        assert self.process.returncode == 0, "".join(self.log)
        assert "Traceback" not in "".join(self.log), "".join(self.log)


def launch(
    gallery: Path,
    *options: str,
    token: str | None = TOKEN,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Server:
    """``ecgbio serve --gallery GALLERY --port 0 OPTIONS`` in a subprocess, once it answers
    (``env``: variables set for it; ``ECGBIO_TOKEN`` is unset otherwise)."""
    command = [sys.executable, "-m", "ecgbio.cli", "serve", "--gallery", str(gallery)]
    command += ["--port", "0", *options]
    tmp = gallery.parent / f"{gallery.name}-tmp"
    tmp.mkdir()
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}
    environ.pop("ECGBIO_TOKEN", None)
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env={**environ, **(env or {})},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []

    def pump() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            log.append(line)
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    url = None
    deadline = time.monotonic() + 90
    while url is None and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, "".join(log)
            continue
        if "listening on " in line:
            url = line.split("listening on ")[1].split()[0]
    assert url, "server did not start:\n" + "".join(log)
    running = Server(url, gallery, process, log, tmp, **kwargs)
    with running.client(token) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:  # pragma: no cover - not accepting yet
                pass
            time.sleep(0.1)
    return running


def synthetic_records(folder: Path, persons: int, seed: int) -> list[Path]:
    """Synthetic persons, one 10 s single-lead 500 Hz WFDB record each (record paths)."""
    root = write_synthetic_cohort(
        folder,
        n_persons=persons,
        records_per_person=1,
        duration_s=10.0,
        rate=500,
        n_leads=1,
        seed=seed,
    )
    return sorted(p.with_suffix("") for p in (root / "records500").rglob("*.hea"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> list[Path]:
    """12 synthetic persons."""
    return synthetic_records(tmp_path_factory.mktemp("service-cohort"), 12, seed=3)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    """The module's server: a token file (0600), 2 threads, a 1 MB request limit."""
    work = tmp_path_factory.mktemp("service")
    token_file = work / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    running = launch(
        work / "people",
        "--token-file",
        str(token_file),
        "--threads",
        "2",
        "--max-upload-mb",
        str(MAX_UPLOAD_MB),
    )
    yield running
    running.stop()


def wfdb_files(record: Path) -> list[tuple[str, tuple[str, bytes, str]]]:
    """A WFDB record as multipart ``record`` files (.hea + .dat)."""
    return [
        (
            "record",
            (
                record.name + suffix,
                (record.parent / (record.name + suffix)).read_bytes(),
                "application/octet-stream",
            ),
        )
        for suffix in (".hea", ".dat")
    ]


def samples_of(record: Path) -> dict[str, Any]:
    """A WFDB record as the JSON of a record (samples in mV)."""
    rec = wfdb.rdrecord(str(record))
    return {"fs": rec.fs, "leads": list(rec.sig_name), "samples": rec.p_signal.tolist()}


def one_line_error(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"}, body
    text = body["error"]
    assert "\n" not in text and "Traceback" not in text and "ecgbio-upload" not in text, text
    for fragment in fragments:
        assert fragment in text, text
    return text


def send(kwargs: dict[str, Any]) -> dict[str, Any]:
    """httpx arguments, with a ``json`` body written as Python does (NaN allowed: a client may)."""
    if "json" not in kwargs:
        return kwargs
    body = json.dumps(kwargs["json"]).encode()
    return {"content": body, "headers": {"content-type": "application/json"}}


def state(client: httpx.Client) -> tuple[int, list[str]]:
    """(generation, enrolled names): what a refused request must leave unchanged."""
    health = client.get("/health").json()
    names = [p["name"] for p in client.get("/v1/persons").json()["persons"]]
    return health["generation"], names


# ------------------------------------------------------------------------------------- auth


def test_every_api_route_needs_the_token_and_docs_do_not(server):
    with server.client(token=None) as anonymous, server.client("wrong-token-0123456789") as wrong:
        for method, path in (
            ("GET", "/health"),
            ("GET", "/v1/persons"),
            ("POST", "/v1/identify"),
            ("DELETE", "/v1/persons/x"),
            ("GET", "/v1/gallery"),
        ):
            for client, fragment in ((anonymous, "no bearer token"), (wrong, "wrong bearer token")):
                response = client.request(method, path)
                one_line_error(response, 401, fragment)
                assert response.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.get("/docs").status_code == 200
        for off in ("/redoc", "/docs/oauth2-redirect"):  # only /docs and /openapi.json are open
            one_line_error(anonymous.get(off), 404)
        spec = anonymous.get("/openapi.json").json()
        assert {"EnrolJson", "EnrolForm", "IdentifyJson", "Samples"} <= set(
            spec["components"]["schemas"]
        )
        assert (
            "multipart/form-data" in spec["paths"]["/v1/identify"]["post"]["requestBody"]["content"]
        )
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# ------------------------------------------------------------------------- every endpoint


def test_enrol_identify_verify_list_info_remove(server, cohort, tmp_path):
    alice, bob, stranger = cohort[0], cohort[1], cohort[2]
    with server.client() as client:
        enrolled = client.post("/v1/enroll", data={"person": "alice"}, files=wfdb_files(alice))
        assert enrolled.status_code == 200, enrolled.text
        data = enrolled.json()
        assert data["person"] == "alice" and data["mode"] == "new" and data["templates"] == 1
        assert data["records"][0]["record"] == f"<{alice.name}.hea>"  # never a staged path
        assert data["gallery"] == "people"  # the gallery's name, never its path on the server
        again = client.post("/v1/enroll", data={"person": "alice"}, files=wfdb_files(alice))
        text = one_line_error(again, 409, "mode=replace", "mode=append")
        assert text.startswith("'alice' is already enrolled") and "--" not in text, text
        same = client.post(
            "/v1/enroll", data={"person": "alice", "mode": "append"}, files=wfdb_files(alice)
        )
        one_line_error(same, 409, "already enrolled from", "nothing stored")
        # another record (here a synthetic stranger's: the API does not know whose it is)
        appended = client.post(
            "/v1/enroll", data={"person": "alice", "mode": "append"}, files=wfdb_files(cohort[9])
        )
        assert appended.status_code == 200 and appended.json()["templates"] == 2, appended.text

        record = {**samples_of(bob), "name": "bob-watch"}
        by_json = client.post("/v1/enroll", json={"person": "bob", "records": [record]})
        assert by_json.status_code == 200, by_json.text
        assert by_json.json()["records"][0]["record"] == "<bob-watch>"

        found = client.post("/v1/identify", files=wfdb_files(alice), data={"top_k": "3"})
        assert found.status_code == 200, found.text
        result = found.json()
        assert result["decision"] == "alice" and not result["unknown"]
        assert result["candidates"][0]["person"] == "alice" and len(result["candidates"]) <= 3
        assert set(result) >= {"threshold", "far", "operating_point", "margin", "probe", "reason"}
        nobody = client.post("/v1/identify", json={"record": samples_of(stranger)})
        assert nobody.status_code == 200 and nobody.json()["decision"] == "unknown", nobody.text

        accept = client.post("/v1/verify", files=wfdb_files(bob), data={"claim": "bob"})
        assert accept.status_code == 200 and accept.json()["decision"] == "accept", accept.text
        reject = client.post("/v1/verify", json={"claim": "alice", "record": samples_of(bob)})
        assert reject.status_code == 200 and reject.json()["decision"] == "reject", reject.text
        assert reject.json()["score"] < reject.json()["threshold"]
        missing = one_line_error(
            client.post("/v1/verify", json={"claim": "carol", "record": samples_of(bob)}),
            404,
            "'carol' is not enrolled",
        )
        assert str(server.gallery) not in missing, missing
        one_line_error(
            client.post("/v1/verify", json={"claim": "bob", "far": "0", "record": {}}),
            422,
            "far: must be between 0 and 1",  # the field, not the CLI's --far
        )

        listing = client.get("/v1/persons").json()
        assert listing["gallery"] == "people"
        persons = {p["name"]: p for p in listing["persons"]}
        assert persons["alice"]["templates"] == 2 and persons["bob"]["templates"] == 1
        info = client.get("/v1/gallery", params={"check": "true"}).json()
        assert info["persons"] >= 2 and info["integrity"] == "ok" and info["index"] == "auto"
        assert info["gallery"] == "people" and info["model_run"] == "default"

        removed = client.delete("/v1/persons/bob")
        assert removed.json() == {
            "gallery": "people",
            "removed": "bob",
            "templates": 1,
            "persons_left": info["persons"] - 1,
        }
        one_line_error(client.delete("/v1/persons/bob"), 404, "'bob' is not enrolled")
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["persons"] == info["persons"] - 1


def test_an_edf_upload_and_a_stand_in_lead(server, cohort, tmp_path):
    edfio = pytest.importorskip("edfio")
    person = cohort[3]
    rec = wfdb.rdrecord(str(person))
    path = tmp_path / "holter.edf"
    edfio.Edf(
        [edfio.EdfSignal(rec.p_signal[:, 0], rec.fs, label="ECG1", physical_dimension="mV")]
    ).write(path)
    with server.client() as client:
        files = [("record", ("holter.edf", path.read_bytes(), "application/octet-stream"))]
        refused = client.post("/v1/enroll", data={"person": "dora"}, files=files)
        one_line_error(refused, 422, "holter.edf", "ECG1")  # no lead I: named, not staged
        enrolled = client.post("/v1/enroll", data={"person": "dora", "lead": "ECG1"}, files=files)
        assert enrolled.status_code == 200, enrolled.text
        assert any("ECG1 stands in" in note for note in enrolled.json()["notes"])
        found = client.post("/v1/identify", files=files, data={"lead": "ECG1"})
        assert found.json()["decision"] == "dora", found.text


# -------------------------------------------------------------------------------- bad input


def test_bad_uploads_are_4xx_one_line_and_change_nothing(server, cohort):
    record = cohort[4]
    hea = (record.parent / f"{record.name}.hea").read_bytes()
    dat = (record.parent / f"{record.name}.dat").read_bytes()
    name = record.name
    octet = "application/octet-stream"
    good_json = samples_of(record)
    signal_line = hea.splitlines()[1]
    # a header whose lines differ by reader (the reviewer's): latin-1 sees one comment line,
    # UTF-8 a record line and a signal line after it (\xc2\x85 is a line break there)
    hidden = b"# x\xc2\x85 " + name.encode() + b" 1 500 5000\xc2\x85" + signal_line + b"\n"

    def pair(header: bytes) -> dict[str, Any]:
        return {
            "files": [
                ("record", (f"{name}.hea", header, octet)),
                ("record", (f"{name}.dat", dat, octet)),
            ]
        }

    cases: list[tuple[dict[str, Any], int, tuple[str, ...]]] = [
        (
            {"files": [("record", ("junk.hea", b"\x00\x01\x02garbage", octet))]},
            400,
            ("junk.hea", "not a WFDB header"),
        ),
        (
            {
                "files": [
                    ("record", ("junk.hea", b"junk 1 notarate 100\njunk.dat 16 200\n", octet)),
                    ("record", ("junk.dat", dat, octet)),
                ]
            },
            422,
            ("junk.hea",),
        ),
        (
            {"files": [("record", (f"{name}.hea", hea, octet))]},
            400,
            (f"{name}.dat", "was not uploaded"),
        ),
        (
            {
                "files": [
                    ("record", ("other.hea", hea, octet)),
                    ("record", (f"{name}.dat", dat, octet)),
                ]
            },
            400,
            ("other.hea", f"names record '{name}'"),
        ),
        (
            {
                "files": [
                    ("record", (f"{name}.hea", hea, octet)),
                    ("record", ("stray.dat", dat, octet)),
                    ("record", (f"{name}.dat", dat, octet)),
                ]
            },
            400,
            ("stray.dat",),
        ),
        ({"files": [("record", ("../../x.hea", hea, octet))]}, 400, ("'../../x.hea'", "refused")),
        ({"files": [("record", ("a/b.hea", hea, octet))]}, 400, ("refused",)),
        ({"files": [("record", (".hea", hea, octet))]}, 400, ("refused",)),
        (
            {"files": [("record", ("x.hea", b"x/2 1 500 100\nx_1 100\n", octet))]},
            400,
            ("multi-segment",),
        ),
        ({"files": [("record", (f"{name}.dat", dat, octet))]}, 400, ("no record",)),
        (pair(hidden + b"evil/1 1 500 5000\nr0 5000\n"), 400, (f"{name}.hea", "byte 0xc2")),
        (pair(hidden + b"evil 1 500 5000\nr0s0.dat 16 1000/mV\n"), 400, ("byte 0xc2",)),
        (pair(hea.replace(b"\n", b"\x0c")), 400, (f"{name}.hea", "byte 0x0c")),
        (pair(hea.replace(b"\n", b"\x1e")), 400, ("byte 0x1e",)),
        (pair(hea + b"other 1 500 5000\n"), 400, ("only comment lines may follow",)),
        ({"files": [("other", (f"{name}.hea", hea, octet))]}, 400, ("'record'",)),
        (
            {
                "data": {"top_k": "0"},
                "files": [
                    ("record", (f"{name}.hea", hea, octet)),
                    ("record", (f"{name}.dat", dat, octet)),
                ],
            },
            422,
            ("top_k",),
        ),
        (
            {"data": {"topk": "3"}, "files": [("record", (f"{name}.hea", hea, octet))]},
            422,
            ("topk",),
        ),
        (
            {"json": {"record": {**good_json, "samples": [[float("nan")]] * 5000}}},
            422,
            ("<samples>",),
        ),
        ({"json": {"record": {**good_json, "fs": 1e6}}}, 422, ("<samples>", "sampling rate")),
        ({"json": {"record": {**good_json, "fs": -5}}}, 422, ("<samples>", "sampling rate")),
        ({"json": {"record": {**good_json, "units": "furlongs"}}}, 422, ("units",)),
        (
            {"json": {"record": {**good_json, "samples": [[1.0], [2.0, 3.0]]}}},
            422,
            ("equal length",),
        ),
        ({"json": {"record": {**good_json, "samples": [[0.0]] * 5000}}}, 422, ("<samples>",)),
        ({"json": {"record": {**good_json, "samples": None}}}, 422, ("samples", "valid array")),
        (
            {"json": {"record": {**good_json, "samples": [[0.1], ["a"]] * 10}}},
            422,
            ("<samples>", "must be numbers"),
        ),
        ({"json": {"record": {**good_json, "samples": [[[0.1]]] * 10}}}, 422, ("numbers",)),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ()),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, ("text/plain",)),
        (
            {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            400,
            (),
        ),
    ]
    with server.client() as client:
        before = state(client)
        for kwargs, status, fragments in cases:
            one_line_error(client.post("/v1/identify", **send(kwargs)), status, *fragments)
            # the same records offered for enrolment: refused alike, nobody stored
            if "json" in kwargs:
                enrol = {"json": {"person": "mallory", "records": [kwargs["json"]["record"]]}}
            elif "files" in kwargs and "top_k" not in kwargs.get("data", {}):
                enrol = {**kwargs, "data": {**kwargs.get("data", {}), "person": "mallory"}}
            else:
                continue
            one_line_error(client.post("/v1/enroll", **send(enrol)), status, *fragments)
        assert state(client) == before  # nothing enrolled, the generation never bumped
    assert not list(server.tmp.glob("ecgbio-upload-*"))  # every staged upload was deleted


def test_too_large_requests_are_refused_before_they_are_read(server):
    limit = MAX_UPLOAD_MB * 1024 * 1024
    host, port = server.url.removeprefix("http://").rsplit(":", 1)

    def ask(headers: dict[str, str], body: Iterator[bytes]) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            connection.putrequest("POST", "/v1/identify")
            for key, value in {"Authorization": f"Bearer {TOKEN}", **headers}.items():
                connection.putheader(key, value)
            connection.endheaders()
            for chunk in body:
                try:
                    connection.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the server answered early and closed: that is the point
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()

    # a declared length over the limit: answered without sending a byte of the body
    status, body = ask({"Content-Length": str(10**9), "Content-Type": "application/json"}, iter(()))
    assert status == 413 and "--max-upload-mb" in body["error"], body
    # no declared length (chunked): counted while it streams in
    chunk = b" " * 65536

    def chunked() -> Iterator[bytes]:
        for _ in range(limit // len(chunk) + 4):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"

    status, body = ask(
        {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}, chunked()
    )
    assert status == 413 and set(body) == {"error"}, body


def test_messages_name_the_uploaded_file_even_when_it_looks_like_a_staged_one(server):
    """Client names that staged names once were (r1.csv, r0s0.csv): the message names the file
    the client sent, not another one (renaming was sequential: r0.csv -> r1.csv -> ok.csv)."""
    ticks = b"".join(b"%f,%f\n" % (i / 500, 0.1 * (i % 500 == 0)) for i in range(5000))
    with server.client() as client:
        before = state(client)
        refused = client.post(
            "/v1/enroll",
            data={"person": "zz"},
            files=[
                ("record", ("r1.csv", b"garbage\n1,2\n")),
                ("record", ("ok.csv", b"time,I\n" + ticks)),
            ],
        )
        text = one_line_error(refused, 422, "r1.csv: ", "garbage")
        assert "ok.csv" not in text, text
        one_line_error(
            client.post("/v1/identify", files=[("record", ("r0s0.csv", b"x,y\n1,2\n"))]),
            422,
            "r0s0.csv: ",
        )
        assert state(client) == before


def test_staged_names_are_put_back_in_one_pass():
    from ecgbio.service.uploads import Staged

    staged = Staged([], {"/up/r0.csv": "r1.csv", "r0.csv": "r1.csv", "r1.csv": "ok.csv"})
    assert staged.rename("/up/r0.csv: bad; r1.csv: fine") == "r1.csv: bad; ok.csv: fine"


def test_json_is_parsed_in_a_worker_thread_and_its_size_is_bounded(tmp_path, monkeypatch):
    """The parse runs off the event loop (no loop runs in its thread), samples become one float
    array in mV, and a body of more numbers than MAX_JSON_VALUES is refused before parsing."""
    import asyncio

    from ecgbio.service import uploads
    from ecgbio.service.app import create_app
    from ecgbio.service.settings import ServiceSettings

    where: list[str] = []
    parse = uploads._from_json

    def spy(*args: Any) -> Any:
        try:
            asyncio.get_running_loop()
            where.append("event loop")
        except RuntimeError:
            where.append("worker thread")
        return parse(*args)

    class Echo:
        def identify(self, probe: Any, options: Any) -> dict[str, Any]:
            x = probe.record.samples
            return {"shape": list(x.shape), "dtype": str(x.dtype), "first": x[0].tolist()}

        def close(self) -> None:
            pass

    monkeypatch.setattr(uploads, "_from_json", spy)
    monkeypatch.setattr(uploads, "MAX_JSON_VALUES", 100)
    app = create_app(Echo(), ServiceSettings(gallery=tmp_path, token=TOKEN))  # type: ignore[arg-type]
    record = {"fs": 500, "leads": ["I", "II"], "units": "uV", "samples": [[100, 200]] * 40}
    with in_process(app) as client:
        answer = client.post("/v1/identify", json={"record": record})
        assert answer.json() == {"shape": [40, 2], "dtype": "float64", "first": [0.1, 0.2]}
        assert where == ["worker thread"]
        too_many = client.post(
            "/v1/identify", json={"record": {**record, "samples": [[1, 2]] * 60}}
        )
        one_line_error(too_many, 413, "at most 100 per request")
        assert where == ["worker thread"] * 2  # refused by the count, before any parse


# ------------------------------------------------------------------------------ concurrency


def test_parallel_identify_while_another_thread_enrols(server, cohort):
    probe = cohort[5]
    newcomers = cohort[6:11]
    with server.client() as client:
        enrolled = client.post("/v1/enroll", data={"person": "steady"}, files=wfdb_files(probe))
        assert enrolled.status_code == 200, enrolled.text
        generation, names = state(client)

    def identify(_: int) -> list[str]:
        with server.client() as client:
            out = []
            for _ in range(4):
                response = client.post("/v1/identify", files=wfdb_files(probe))
                assert response.status_code == 200, response.text
                out.append(response.json()["decision"])
            return out

    def enrol() -> list[int]:
        with server.client() as client:
            return [
                client.post(
                    "/v1/enroll", json={"person": f"new-{i}", "records": [samples_of(r)]}
                ).status_code
                for i, r in enumerate(newcomers)
            ]

    with ThreadPoolExecutor(5) as pool:
        writer = pool.submit(enrol)
        readers = [pool.submit(identify, i) for i in range(4)]
        decisions = [d for r in readers for d in r.result()]
        assert writer.result() == [200] * 5
    assert decisions == ["steady"] * 16
    with server.client() as client:
        after_generation, after = state(client)
    assert set(after) == set(names) | {f"new-{i}" for i in range(5)}
    assert after_generation == generation + 5


def test_a_cli_enrolment_is_seen_by_the_running_server_with_the_same_json(server, cohort):
    record = cohort[11]
    enrolled = runner.invoke(
        cli_app, ["enroll", "--gallery", str(server.gallery), "--id", "from-cli", str(record)]
    )
    assert enrolled.exit_code == 0, enrolled.output
    with server.client() as client:
        names = [p["name"] for p in client.get("/v1/persons").json()["persons"]]
        assert "from-cli" in names
        served = client.post("/v1/identify", files=wfdb_files(record))
    assert served.status_code == 200 and served.json()["decision"] == "from-cli", served.text
    by_cli = runner.invoke(
        cli_app, ["identify", "--gallery", str(server.gallery), str(record), "--json"]
    )
    assert by_cli.exit_code == 0, by_cli.output
    cli_json, served_json = json.loads(by_cli.stdout), served.json()
    assert cli_json["probe"].pop("record") == str(record)
    assert served_json["probe"].pop("record") == f"<{record.name}.hea>"
    assert served_json == cli_json


# --------------------------------------------------------------------------- real records


@pytest.mark.realdata
def test_real_ecgid_records_through_the_server(server):
    ecgid = shared("ecg-id-database-1.0.0")
    with server.client() as client:
        for n in (1, 2, 3):
            person = ecgid / f"Person_{n:02d}" / "rec_1"
            response = client.post(
                "/v1/enroll", data={"person": f"person{n:02d}"}, files=wfdb_files(person)
            )
            assert response.status_code == 200, response.text
        found = client.post("/v1/identify", files=wfdb_files(ecgid / "Person_02" / "rec_4"))
        assert found.json()["decision"] == "person02", found.text
        accept = client.post(
            "/v1/verify",
            data={"claim": "person01"},
            files=wfdb_files(ecgid / "Person_01" / "rec_3"),
        )
        assert accept.json()["decision"] == "accept", accept.text
        impostor = client.post(
            "/v1/verify",
            json={"claim": "person03", "record": samples_of(ecgid / "Person_01" / "rec_2")},
        )
        assert impostor.json()["decision"] == "reject", impostor.text


# ------------------------------------------------------------------------ refusing to start


def _serve(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(cli_app, ["serve", *args], env={"ECGBIO_TOKEN": "", **(env or {})})


def _refused(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text, text
    for fragment in fragments:
        assert fragment in text, text


def test_refuses_to_start_unsafe(tmp_path):
    gallery = str(tmp_path / "g")
    _refused(_serve("--gallery", gallery, "--host", "0.0.0.0"), "no token")
    _refused(_serve("--gallery", gallery), "no token")  # loopback, but --no-auth not given
    _refused(_serve("--gallery", gallery, "--host", "0.0.0.0", "--no-auth"), "--no-auth")
    _refused(_serve("--gallery", gallery, "--host", "192.168.1.5", "--no-auth"), "--no-auth")
    readable = tmp_path / "token"
    readable.write_text(TOKEN)
    for mode in (0o644, 0o640, 0o604, 0o620):  # group or others: read or write, refused
        readable.chmod(mode)
        _refused(_serve("--gallery", gallery, "--token-file", str(readable)), "chmod 600")
    readable.chmod(0o600)
    for mb in ("inf", "nan", "-1", "0", "1e30", "5000"):  # the value given, in one line
        _refused(
            _serve("--gallery", gallery, "--token-file", str(readable), "--max-upload-mb", mb),
            "--max-upload-mb must be a size in MB",
            f"got {float(mb):g}",
        )
    _refused(_serve("--gallery", gallery, "--token-file", str(readable), "--no-auth"), "exclude")
    _refused(_serve("--gallery", gallery, env={"ECGBIO_TOKEN": "short"}), "at least 16")
    _refused(
        _serve("--gallery", gallery, "--token-file", str(readable), "--ssl-certfile", gallery),
        "--ssl-keyfile",
    )
    garbage = tmp_path / "cert.pem"
    garbage.write_text("not a certificate")
    _refused(
        _serve("--gallery", gallery, "--token-file", str(readable),
               "--ssl-certfile", str(garbage), "--ssl-keyfile", str(garbage)),
        "TLS cannot use them",
    )  # fmt: skip
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        _refused(
            _serve("--gallery", gallery, "--token-file", str(readable), "--port", port),
            "cannot listen",
        )
    _refused(
        _serve("--gallery", gallery, "--token-file", str(readable), "--workers", "0"),
        "--workers",
    )
    assert not (tmp_path / "g").exists()  # nothing was created by a refused start


def test_the_token_file_belongs_to_this_user_alone_and_a_link_is_checked_at_its_target(
    tmp_path,
):
    from ecgbio.errors import ConfigError
    from ecgbio.service.settings import load_token

    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    link = tmp_path / "link"
    link.symlink_to(token)
    assert load_token(link, {}) == TOKEN  # a link (a secret store's mount) is followed
    token.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_token(link, {})  # and the file it points to is checked
    token.chmod(0o600)
    with pytest.raises(ConfigError, match="not a plain file"):
        load_token(tmp_path, {})
    if os.geteuid() == 0:  # only root can give a file away
        os.chown(token, 65534, -1)
        with pytest.raises(ConfigError, match="owned by user id 65534"):
            load_token(token, {})


def test_workers_get_their_settings_from_the_environment_without_the_token_in_json(tmp_path):
    from ecgbio.service.settings import (
        SETTINGS_ENV,
        TOKEN_ENV,
        ServiceSettings,
        from_environment,
        to_environment,
        worker_environment,
    )

    settings = ServiceSettings(gallery=tmp_path / "g", token=TOKEN, threads=3, workers=2)
    environ = to_environment(settings)
    assert environ[TOKEN_ENV] == TOKEN and TOKEN not in environ[SETTINGS_ENV]
    assert from_environment(environ) == settings
    # --no-auth: the variable is set (empty), so a token exported for the parent, which it
    # ignored, does not reach the workers (they used to refuse "--no-auth and a token" forever)
    open_settings = ServiceSettings(gallery=tmp_path / "g", no_auth=True, workers=2)
    inherited = {TOKEN_ENV: "exported-0123456789abcdef"}
    assert worker_environment(open_settings)[TOKEN_ENV] == ""
    assert from_environment({**inherited, **to_environment(open_settings)}) == open_settings


def test_a_worker_that_cannot_build_its_app_stops_the_service(tmp_path, monkeypatch, capsys):
    """A worker's failure is one ``error:`` line and uvicorn's STARTUP_FAILURE (its supervisor
    then stops instead of restarting it forever); ``ecgbio serve`` then exits with code 2."""
    from uvicorn.config import STARTUP_FAILURE

    from ecgbio.errors import ConfigError
    from ecgbio.service import engine, server
    from ecgbio.service.app import app_from_environment
    from ecgbio.service.settings import SETTINGS_ENV, ServiceSettings, to_environment

    monkeypatch.setenv(SETTINGS_ENV, '{"gallery": 5}')
    with pytest.raises(SystemExit) as stopped:
        app_from_environment()
    assert stopped.value.code == STARTUP_FAILURE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {SETTINGS_ENV}: not the settings")

    settings = ServiceSettings(gallery=tmp_path / "g", no_auth=True, workers=2)
    for key, value in to_environment(settings).items():
        monkeypatch.setenv(key, value)

    def broken(settings: ServiceSettings) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "start_engine", broken)  # not an ecgbio error: a bug
    with pytest.raises(SystemExit) as stopped:
        app_from_environment()
    assert stopped.value.code == STARTUP_FAILURE
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err and err.strip().splitlines()[-1].startswith("error: ")

    class Supervisor:  # uvicorn's Multiprocess after a worker failed to start
        def __init__(self, config: Any, sockets: Any) -> None:
            self.processes = [SimpleNamespace(exitcode=STARTUP_FAILURE)]

        def run(self) -> None:
            pass

    monkeypatch.setattr("uvicorn.supervisors.Multiprocess", Supervisor)
    with socket.socket() as sock, pytest.raises(ConfigError, match="could not start"):
        sock.bind(("127.0.0.1", 0))
        server.run_workers(settings, sock)


def test_workers_without_auth_ignore_an_exported_token(tmp_path):
    """``ECGBIO_TOKEN`` exported, ``--no-auth --workers 2``: the workers start and serve
    without a token, as the parent does (they used to refuse it and restart forever)."""
    served = launch(
        tmp_path / "g",
        "--no-auth",
        "--workers",
        "2",
        token=None,
        env={"ECGBIO_TOKEN": "exported-0123456789abcdef"},
    )
    try:
        assert "2 worker(s)" in "".join(served.log)
        for _ in range(4):  # a new connection each time: either worker may take it
            with served.client(token=None) as client:
                assert client.get("/health").json()["status"] == "ok"
    finally:
        served.stop()


def test_a_single_process_server(tmp_path, cohort):
    """``--workers 1``: no child processes; the same answers."""
    served = launch(tmp_path / "g", "--no-auth", "--workers", "1", token=None)
    try:
        assert "1 worker(s)" in "".join(served.log)
        with served.client(token=None) as client:
            enrolled = client.post(
                "/v1/enroll", data={"person": "solo"}, files=wfdb_files(cohort[0])
            )
            assert enrolled.status_code == 200, enrolled.text
            answer = client.post("/v1/identify", files=wfdb_files(cohort[0])).json()
            assert answer["decision"] == "solo"
    finally:
        served.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_tls_with_a_self_signed_certificate(tmp_path, cohort):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    trust = ssl.create_default_context(cafile=str(cert))
    served = launch(
        tmp_path / "g", "--no-auth", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
        token=None, verify=trust,
    )  # fmt: skip
    try:
        assert served.url.startswith("https://127.0.0.1:")
        with served.client(token=None) as client:
            empty = client.post("/v1/identify", files=wfdb_files(cohort[0]))
            one_line_error(empty, 409, "no enrolled persons")
            enrolled = client.post(
                "/v1/enroll", data={"person": "tls"}, files=wfdb_files(cohort[0])
            )
            assert enrolled.status_code == 200, enrolled.text
        with pytest.raises(httpx.ConnectError):  # a client that does not trust it: refused
            httpx.get(served.url + "/health", timeout=10)
    finally:
        served.stop()


# ------------------------------------------------------------------------------ a real bug


@contextmanager
def in_process(app: Any) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn in a thread of this process (lifespan and all), and a client."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
        ) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)


def test_a_bug_is_a_generic_500_with_the_traceback_in_the_log(tmp_path, caplog):
    from ecgbio.service.app import create_app
    from ecgbio.service.settings import ServiceSettings

    class Broken:
        def persons(self) -> dict:
            raise ZeroDivisionError("secret detail")

        def close(self) -> None:
            pass

    settings = ServiceSettings(gallery=tmp_path, token=TOKEN)
    app = create_app(Broken(), settings)  # type: ignore[arg-type]
    with in_process(app) as client:
        response = client.get("/v1/persons")
    text = one_line_error(response, 500, "internal error")
    assert "secret detail" not in text and "ZeroDivisionError" not in text
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


def test_staged_names_never_leave_the_folder(tmp_path):
    from io import BytesIO

    from ecgbio.service.uploads import Part, Upload, stage

    header = (
        b"rec_1 2 500 10\r\nrec_1.dat 16 200 12 0 0 0 0 ECG I\r\n"
        b"rec_1.dat 16 200 12 0 0 0 0 ECG I filtered\r\n# Age: 25\r\n"
    )
    upload = Upload(
        None, parts=[Part("rec_1.hea", BytesIO(header)), Part("rec_1.dat", BytesIO(b"\0" * 40))]
    )
    with stage(upload) as staged:
        header = Path(staged.probes[0].record)
        folder, record = header.parent, header.stem  # u<random tag>r0: no client can guess it
        assert re.fullmatch(r"u[0-9a-f]{12}r0", record), record
        assert oct(folder.stat().st_mode & 0o777) == oct(0o700)
        assert sorted(p.name for p in folder.iterdir()) == [f"{record}.hea", f"{record}s0.dat"]
        assert all(p.stat().st_mode & 0o777 == 0o600 for p in folder.iterdir())
        text = header.read_bytes()
        assert text.startswith(f"{record} 2 500 10\r\n{record}s0.dat 16".encode())
        assert b"# Age: 25\r\n" in text
        assert staged.probes[0].label == "<rec_1.hea>"
        assert staged.rename(f"{header}: signal file {record}s0.dat is short") == (
            "rec_1.hea: signal file rec_1.dat is short"
        )
    assert not folder.exists()
