"""``ecgbio serve`` under hostile or unlucky conditions (the reviewer's reproductions).

Numbers too large for a float, a ``far`` the model has no operating point for (and no server path
in any answer), query parameters the routes do not read, slow and stalled clients, a gallery
file deleted or damaged while the service runs (and restored), a bad ``--host``, a lead named
twice. Bad input is one 4xx JSON line, a fault on the server a 5xx, and the gallery survives.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.test_service import (
    TOKEN,
    Server,
    _refused,
    _serve,
    launch,
    one_line_error,
    samples_of,
    send,
    state,
    synthetic_records,
    wfdb_files,
)


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Path]:
    """Two synthetic persons, one 10 s single-lead 500 Hz WFDB record each."""
    return synthetic_records(tmp_path_factory.mktemp("robust-cohort"), 2, seed=5)


def _token_file(folder: Path) -> Path:
    token = folder / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return token


@pytest.fixture(scope="module")
def server(tmp_path_factory, records) -> Iterator[Server]:
    """One worker process, a person enrolled (``anna``)."""
    work = tmp_path_factory.mktemp("robust")
    running = launch(work / "people", "--token-file", str(_token_file(work)), "--workers", "1")
    with running.client() as client:
        enrolled = client.post("/v1/enroll", data={"person": "anna"}, files=wfdb_files(records[0]))
        assert enrolled.status_code == 200, enrolled.text
    yield running
    running.stop()


def no_path(text: str, *paths: Path) -> None:
    """No folder of the server's in ``text`` (the gallery's, the package's, the temp folder)."""
    here = Path(__file__).resolve().parents[1]
    for path in (here, *paths):
        assert str(path) not in text and str(path.resolve()) not in text, text


# ------------------------------------------------------------------------------- bad input


def test_an_integer_too_large_for_a_float_is_a_422_not_a_500(server, records):
    huge = int("9" * 400)
    good = samples_of(records[1])
    with server.client() as client:
        before = state(client)
        for samples in ([huge, 1, 2], [[huge], [1], [2]], [[0.1], [huge]]):
            record = {**good, "samples": samples}
            for path, body in (
                ("/v1/identify", {"record": record}),
                ("/v1/enroll", {"person": "huge", "records": [record]}),
            ):
                one_line_error(
                    client.post(path, **send({"json": body})), 422, "<samples>", "too large"
                )
        assert state(client) == before


def test_a_far_without_an_operating_point_is_a_422_naming_no_server_path(server, records):
    with server.client() as client:
        for far in ("0.05", "1e-300"):
            answers = [
                client.post("/v1/identify", data={"far": far}, files=wfdb_files(records[0])),
                client.post(
                    "/v1/verify", data={"far": far, "claim": "anna"}, files=wfdb_files(records[0])
                ),
                client.post("/v1/identify", json={"far": far, "record": samples_of(records[0])}),
            ]
            for answer in answers:
                text = one_line_error(
                    answer, 422, f"far={float(far):g} is not an operating point", "available: "
                )
                assert "thresholds.json" not in text and "/" not in text, text
                no_path(text, server.gallery)
        # a known point and a threshold are still answered
        fine = client.post("/v1/identify", data={"far": "0.01"}, files=wfdb_files(records[0]))
        assert fine.status_code == 200 and fine.json()["decision"] == "anna", fine.text


def test_gallery_messages_name_the_gallery_not_its_path(records, tmp_path):
    """The one place every error line leaves through (:func:`ecgbio.service.problems.answer`)
    puts the gallery's and the model's names for every spelling of their paths."""
    from ecgbio.embed import Embedder
    from ecgbio.service.engine import Engine

    engine = Engine.start(tmp_path / "deep" / "people", Embedder("default", threads=1))
    try:
        run = engine.embedder.run.root
        for text in (
            f"{tmp_path}/deep/people: gallery file is corrupt",
            f"{tmp_path}/deep/people/gallery.sqlite: gallery file is corrupt",
            f"no point in {run}/thresholds.json, see {run.resolve()}",
        ):
            public = engine.public_text(text)
            no_path(public, tmp_path, run)
        assert engine.public_text(f"{tmp_path}/deep/people/gallery.sqlite: bad") == "bad"
        assert "default/thresholds.json" in engine.public_text(f"x {run}/thresholds.json")
    finally:
        engine.close()


def test_query_parameters_the_route_does_not_read_are_refused(server, records):
    with server.client() as client:
        before = state(client)
        for path, query in (
            ("/v1/identify", "top_k=-1"),
            ("/v1/identify", "threshold=2"),
            ("/v1/identify", "far=nan"),
            ("/v1/identify", "topk=1"),
            ("/v1/verify", "threshold=0.99"),
            ("/v1/enroll", "person=x"),
        ):
            name = query.split("=")[0]
            data = {"/v1/verify": {"claim": "anna"}, "/v1/enroll": {"person": "q"}}.get(path, {})
            answer = client.post(f"{path}?{query}", data=data, files=wfdb_files(records[0]))
            one_line_error(answer, 422, f"query parameter '{name}'", "request's body")
        for path in ("/v1/persons?x=1", "/health?verbose=1", "/v1/gallery?check=true&deep=1"):
            one_line_error(client.get(path), 422, "query parameter")
        one_line_error(client.delete("/v1/persons/anna?force=1"), 422, "'force'")
        assert client.get("/v1/gallery?check=true").json()["integrity"] == "ok"
        assert state(client) == before  # anna is still there
    with server.client(token=None) as anonymous:  # the token is checked first
        one_line_error(anonymous.post("/v1/identify?top_k=-1"), 401, "no bearer token")


def test_a_lead_named_twice_is_refused(server, records, tmp_path):
    good = samples_of(records[0])
    two = [[v[0], v[0]] for v in good["samples"]]
    with server.client() as client:
        for leads, fragment in ((["I", "I"], "'I' is named twice"), (["I", "i"], "same lead")):
            record = {**good, "leads": leads, "samples": two}
            one_line_error(
                client.post("/v1/identify", json={"record": record}), 422, "leads", fragment
            )
        rows = "".join(f"{i / 500:.3f},{v[0]:.4f},{v[0]:.4f}\n" for i, v in enumerate(two))
        for header in ("time,I,I", "time,I,ECG i [uV]"):
            table = f"{header}\n{rows}".encode()
            answer = client.post("/v1/identify", files=[("record", ("twice.csv", table))])
            one_line_error(answer, 422, "twice.csv", "name the same lead")
    from ecgbio.errors import RecordError
    from ecgbio.formats import read_csv

    path = tmp_path / "twice.csv"
    path.write_text("time,I,I\n" + rows)
    with pytest.raises(RecordError, match="columns 'I' and 'I' name the same lead"):
        read_csv(path, ("I",))
    path.write_text("time,I,II,\n" + "".join(r.rstrip() + ",\n" for r in rows.splitlines()))
    assert read_csv(path, ("all",)).leads == ("I", "II")  # unnamed columns are no leads


def test_a_host_that_idna_refuses_is_one_line(tmp_path):
    token = _token_file(tmp_path)
    result = _serve(
        "--gallery", str(tmp_path / "g"), "--token-file", str(token), "--host", "bad..host"
    )
    _refused(result, "--host bad..host", "not a valid host name")
    for option, value in (("--request-timeout", "0"), ("--request-timeout", "nan")):
        result = _serve("--gallery", str(tmp_path / "g"), "--token-file", str(token), option, value)
        _refused(result, "--request-timeout must be")
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------ a gallery that goes away


def test_a_gallery_deleted_or_damaged_while_serving_is_a_503_and_recovers(tmp_path, records):
    token = _token_file(tmp_path)
    served = launch(tmp_path / "people", "--token-file", str(token), "--workers", "1")
    db = served.gallery / "gallery.sqlite"
    backup = tmp_path / "backup.sqlite"
    try:
        with served.client() as client:
            ok = client.post("/v1/enroll", data={"person": "anna"}, files=wfdb_files(records[0]))
            assert ok.status_code == 200, ok.text
            shutil.copy2(db, backup)

            def every_route(status: int, *fragments: str) -> None:
                for answer in (
                    client.get("/health"),
                    client.get("/v1/persons"),
                    client.get("/v1/gallery"),
                    client.post("/v1/identify", files=wfdb_files(records[0])),
                    client.post("/v1/verify", data={"claim": "anna"}, files=wfdb_files(records[0])),
                    client.post("/v1/enroll", data={"person": "bo"}, files=wfdb_files(records[1])),
                    client.delete("/v1/persons/anna"),
                ):
                    text = one_line_error(answer, status, *fragments)
                    assert "not in the request" in text or "missing" in text, text
                    no_path(text, tmp_path)
                    assert answer.headers.get("retry-after"), answer.headers

            db.unlink()  # deleted under the running service
            every_route(503, "gallery people is unavailable", "gallery.sqlite is missing")
            assert not db.exists()  # not recreated empty, nothing written elsewhere
            shutil.copy2(backup, db)  # restored: another file (inode)
            assert client.get("/health").json()["persons"] == 1
            assert [p["name"] for p in client.get("/v1/persons").json()["persons"]] == ["anna"]

            size = db.stat().st_size
            with open(db, "r+b") as handle:  # damaged in place: the same file, garbage inside
                handle.write(np.random.default_rng(0).bytes(size))
            every_route(503, "gallery people is unavailable")
            with open(db, "r+b") as handle:  # repaired in place: still the same file
                handle.write(backup.read_bytes())
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["persons"] == 1, health.text
            found = client.post("/v1/identify", files=wfdb_files(records[0]))
            assert found.status_code == 200 and found.json()["decision"] == "anna", found.text
            bo = client.post("/v1/enroll", data={"person": "bo"}, files=wfdb_files(records[1]))
            assert bo.status_code == 200, bo.text
            assert client.get("/v1/gallery?check=true").json()["integrity"] == "ok"
    finally:
        served.stop()


# ----------------------------------------------------------------------- slow clients


class _Fake:
    """An engine that answers at once: the tests below are about connections, not ECGs."""

    def identify(self, probe: Any, options: Any) -> dict[str, Any]:
        return {"samples": len(probe.record.samples)}

    def health(self) -> dict[str, Any]:
        return {"status": "ok"}

    def close(self) -> None:
        pass


@contextmanager
def deadlines(tmp_path: Path, timeout: float, connections: int) -> Iterator[tuple[str, int]]:
    """The app of a fake engine on uvicorn with ``ecgbio serve``'s protocol options, in a
    thread: (host, port)."""
    import uvicorn

    from ecgbio.service.app import create_app
    from ecgbio.service.server import protocol_options
    from ecgbio.service.settings import ServiceSettings

    settings = ServiceSettings(
        gallery=tmp_path, token=TOKEN, request_timeout_s=timeout, max_connections=connections
    )
    app = create_app(_Fake(), settings)  # type: ignore[arg-type]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", **protocol_options(settings)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        yield "127.0.0.1", server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def _open_for(address: tuple[str, int], payload: bytes) -> tuple[float, bytes]:
    """Send ``payload`` and wait: (seconds until the server closed, what it answered)."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=15) as sock:
        if payload:
            sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return time.monotonic() - start, received


def test_slow_and_stalled_requests_are_cut_off_and_connections_capped(tmp_path):
    import json

    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    body_start = b'{"record": '  # 11 bytes of a declared 1000
    with deadlines(tmp_path, timeout=1.0, connections=24) as address:
        slow = {
            "nothing": b"",
            "headers": b"GET /health HTTP/1.1\r\nHost: x\r\n",
            "body": b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + auth
            + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + body_start,
        }  # fmt: skip
        with ThreadPoolExecutor(len(slow)) as pool:  # side by side, as an attacker would
            answers = pool.map(lambda payload: _open_for(address, payload), slow.values())
            results = dict(zip(slow, answers, strict=True))
        for kind, (seconds, answer) in results.items():
            assert 0.9 < seconds < 5, (kind, seconds)
            if kind == "nothing":
                assert answer == b"", answer  # nothing asked, nothing answered
                continue
            head, _, text = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer
            error = json.loads(text)["error"]
            assert set(json.loads(text)) == {"error"} and f"request's {kind}" in error, error

        # a steady upload slower than the timeout but faster than 500 B/s is not cut
        record = {"fs": 500, "samples": [0.001 * (i % 7) for i in range(600)]}
        body = json.dumps({"record": record}).encode()
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(
                b"POST /v1/identify HTTP/1.1\r\nHost: x\r\n" + auth
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )  # fmt: skip
            step = max(1, len(body) // 8)
            for i in range(0, len(body), step):
                sock.sendall(body[i : i + step])
                time.sleep(0.25)  # about 2 s in all, at well over 500 B/s
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"samples": 600}

        # a connection beyond the cap: 503 at once; the held ones time out, then all is well
        held = [socket.create_connection(address, timeout=15) for _ in range(24)]
        try:
            time.sleep(0.2)
            seconds, answer = _open_for(address, b"")
            assert seconds < 1 and answer.startswith(b"HTTP/1.1 503"), (seconds, answer)
            assert b"most connections (24)" in answer, answer
            time.sleep(1.5)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            health = httpx.get(f"http://{address[0]}:{address[1]}/health", headers=headers)
            assert health.json() == {"status": "ok"}, health.text
        finally:
            for sock in held:
                sock.close()


def test_the_default_connection_cap_leaves_file_descriptors_for_the_rest():
    import resource

    from ecgbio.service.deadlines import RESERVED_FDS, default_max_connections

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = default_max_connections()
    assert 16 <= cap <= 4096
    if soft != resource.RLIM_INFINITY and soft > RESERVED_FDS + 16:
        assert cap <= soft - RESERVED_FDS


def test_a_kept_alive_connection_dripping_blank_lines_is_closed(tmp_path):
    """After an answer, bytes that begin no request (``\\r\\n``) cancel uvicorn's keep-alive
    timer: the next request's deadline, running from the answer, closes the connection."""
    headers = f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    with deadlines(tmp_path, timeout=1.0, connections=24) as address:
        start = time.monotonic()
        with socket.create_connection(address, timeout=15) as sock:
            sock.sendall(headers.encode())
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first
            closed = False
            while time.monotonic() - start < 6:
                try:
                    sock.sendall(b"\r\n")
                    if sock.recv(65536, socket.MSG_DONTWAIT) == b"":
                        closed = True
                        break
                except BlockingIOError:
                    pass
                except OSError:  # reset or broken pipe: closed by the server
                    closed = True
                    break
                time.sleep(0.2)
        assert closed and time.monotonic() - start < 4, time.monotonic() - start
