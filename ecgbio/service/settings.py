"""What ``ecgbio serve`` was asked for, and the refusals made before anything starts.

Why refuse rather than warn: the service holds biometric templates, so a server anyone on the
network can query without a token, or whose token file every local user can read, is a
configuration error, not a preference. Every refusal is one line and exit code 2, before the
model is loaded or a port is bound.

Authentication: a bearer token from ``--token-file`` (a plain file owned by the user running the
service, which no other user may read or write) or the ``ECGBIO_TOKEN`` environment variable;
``--token-file`` wins when both are there (an explicit option beats an ambient variable).
``--no-auth`` is accepted only when the server listens on a loopback address (127.0.0.1, ::1,
localhost): only processes on this machine can reach it then.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ecgbio.errors import ConfigError

#: the environment variable holding the token when no ``--token-file`` is given
TOKEN_ENV = "ECGBIO_TOKEN"
#: a token shorter than this is guessable; ``secrets.token_urlsafe(32)`` gives 43 characters
MIN_TOKEN_CHARS = 16
#: RFC 6750's b64token: what may follow ``Bearer`` in a header (``token_urlsafe`` and hex fit)
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: how to make a good token, said in every refusal about one
MAKE_TOKEN = (
    "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))' > F && chmod 600 F"
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 20.0
#: seconds a request may take to arrive (Apache's mod_reqtimeout: 20 s for the headers)
DEFAULT_REQUEST_TIMEOUT_S = 20.0
MAX_REQUEST_TIMEOUT_S = 3600.0
#: the largest ``--max-upload-mb``: a body is held in memory (JSON) or spooled (files) whole
MAX_UPLOAD_MB = 4096
#: a token file larger than this is not a token file
MAX_TOKEN_FILE_BYTES = 4096
#: the settings of worker processes (``--workers``), as JSON without the token
SETTINGS_ENV = "ECGBIO_SERVE_SETTINGS"
#: each worker holds a model and a gallery connection of its own
MAX_WORKERS = 64


def default_workers() -> int:
    """One worker process per core, at most 4: past that, memory (a model each) grows faster
    than answers on the machines a gallery service runs on."""
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the service runs with; :meth:`checked` refuses a combination that is unsafe.

    Attributes:
        gallery: the gallery directory (created when missing, like ``ecgbio enroll`` does).
        model: a run directory, or ``default`` (the shipped model).
        token: the bearer token every request must carry; None only with ``no_auth``.
        threads: how many requests each worker process computes at once (each on one core).
        workers: worker processes, each with its own model and gallery connections, sharing
            the port (Python runs one thread of a process at a time between the model's calls,
            so on several cores processes answer more at once than threads; 1: no child
            processes).
        max_upload_bytes: the largest request body accepted (413 beyond).
        read_limit_s: how much of a record is read (``--max-minutes``; 0: all of it).
        request_timeout_s: a request must arrive whole within this many seconds of its first
            byte, plus a second per 500 bytes of body (408 beyond; see
            :mod:`~ecgbio.service.deadlines`).
        max_connections: connections one worker process holds at once (503 beyond); 0: its
            open-files limit less a reserve (:func:`~ecgbio.service.deadlines.default_max_connections`).
    """

    gallery: Path
    model: str = "default"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    no_auth: bool = False
    threads: int = 1
    workers: int = 1
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024)
    read_limit_s: float = 600.0
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = 0
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    access_log: bool = False

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def checked(self) -> ServiceSettings:
        """These settings, or a :class:`ConfigError` saying which one is refused and why."""
        if self.token is not None and self.no_auth:
            raise ConfigError(
                f"--no-auth and a token (--token-file or {TOKEN_ENV}) exclude each other; give one"
            )
        if self.token is None and not self.no_auth:
            raise ConfigError(
                f"no token: give --token-file F or set {TOKEN_ENV} (every request must then "
                "carry 'Authorization: Bearer <token>'); --no-auth is accepted on a loopback "
                f"host only; {MAKE_TOKEN}"
            )
        if self.no_auth and not is_loopback(self.host):
            raise ConfigError(
                f"--no-auth is refused on --host {self.host}: without a token anyone who can "
                "reach the port could query and change the gallery; serve 127.0.0.1, ::1 or "
                f"localhost, or give a token (--token-file or {TOKEN_ENV})"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535, got {self.port}")
        if self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be 1-{MAX_WORKERS}, got {self.workers}")
        if not 1024 <= self.max_upload_bytes <= MAX_UPLOAD_MB * 1024 * 1024:
            raise ConfigError(
                f"--max-upload-mb must allow 1 KB to {MAX_UPLOAD_MB} MB, got "
                f"{self.max_upload_bytes} bytes"
            )
        if not (
            math.isfinite(self.request_timeout_s)
            and 1 <= self.request_timeout_s <= MAX_REQUEST_TIMEOUT_S
        ):
            raise ConfigError(
                f"--request-timeout must be 1 to {MAX_REQUEST_TIMEOUT_S:g} seconds, got "
                f"{self.request_timeout_s:g}"
            )
        if self.max_connections < 0:
            raise ConfigError(
                f"--max-connections must be >= 1 (0: from the open-files limit), got "
                f"{self.max_connections}"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigError("--ssl-certfile and --ssl-keyfile go together: give both or neither")
        for flag, path in (
            ("--ssl-certfile", self.ssl_certfile),
            ("--ssl-keyfile", self.ssl_keyfile),
        ):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{flag}: no such file", path)
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            check_tls(self.ssl_certfile, self.ssl_keyfile)
        return self


def upload_bytes(mb: float) -> int:
    """``--max-upload-mb`` in bytes; refused (one line, the value as given) unless a finite size
    from 1 KB to :data:`MAX_UPLOAD_MB`."""
    if not (math.isfinite(mb) and 1 / 1024 <= mb <= MAX_UPLOAD_MB):
        raise ConfigError(
            f"--max-upload-mb must be a size in MB from 0.001 (1 KB) to {MAX_UPLOAD_MB}, got {mb:g}"
        )
    return int(mb * 1024 * 1024)


def to_environment(settings: ServiceSettings) -> dict[str, str]:
    """``settings`` as the environment of worker processes: the token in :data:`TOKEN_ENV`
    (where ``ecgbio serve`` reads it too), everything else as JSON in :data:`SETTINGS_ENV`.

    :data:`TOKEN_ENV` is always set, to the empty string when there is no token (``--no-auth``):
    a worker inherits the parent's environment, so a variable the parent ignored (``--no-auth``
    with ``ECGBIO_TOKEN`` exported) must not reach the workers as a token.
    """
    import json
    from dataclasses import asdict

    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    token = fields.pop("token")
    return {SETTINGS_ENV: json.dumps(fields), TOKEN_ENV: token or ""}


def worker_environment(settings: ServiceSettings) -> dict[str, str]:
    """:func:`to_environment`, checked by reading it back as a worker will: a setting that would
    not survive the trip (or that a worker would refuse) is a one-line :class:`ConfigError` in
    the parent, before any worker is spawned, rather than a worker that cannot start."""
    environment = to_environment(settings)
    if from_environment(environment) != settings:
        raise ConfigError(
            "the settings do not survive the trip to the worker processes (a bug); use --workers 1"
        )
    return environment


def from_environment(environ: Mapping[str, str]) -> ServiceSettings:
    """The settings :func:`to_environment` handed to a worker process, checked again (a
    :class:`ConfigError` when they are missing, garbled or refused)."""
    import json

    try:
        fields = json.loads(environ[SETTINGS_ENV])
        for key in ("gallery", "ssl_certfile", "ssl_keyfile"):
            if fields.get(key) is not None:
                fields[key] = Path(fields[key])
        settings = ServiceSettings(**fields, token=environ.get(TOKEN_ENV) or None)
    except KeyError:
        raise ConfigError(
            f"{SETTINGS_ENV} is not set: worker processes get their settings from ecgbio serve"
        ) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{SETTINGS_ENV}: not the settings of ecgbio serve ({exc})") from None
    return settings.checked()


def check_tls(certfile: Path, keyfile: Path) -> None:
    """Refuse a certificate and key that TLS cannot use (not PEM, a key of another certificate,
    a key behind a passphrase), in one line before anything starts, rather than in uvicorn's
    log once it tries."""
    import ssl  # here: every other ecgbio command starts without it

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certfile), str(keyfile), password=lambda: b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"--ssl-certfile / --ssl-keyfile: TLS cannot use them ({exc}); give a PEM "
            "certificate and its unencrypted PEM private key",
            certfile,
        ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, ``localhost``)."""
    import ipaddress  # here: the other commands start without it

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def load_token(token_file: Path | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token from ``token_file`` (refused unless only its owner, this user, may read
    it) or ``$ECGBIO_TOKEN``.

    Returns None when neither gives one. Refused: a token file that is not a plain file, that is
    owned by another user than the one running the service, that any other user may read or
    write (group or others: ``chmod 600`` it), or a token that is too short or holds characters a
    bearer token cannot (spaces, quotes, non-ASCII).

    A symbolic link is followed and its target checked (secret stores such as Kubernetes'
    mount their files as links): the file is opened once and the checks are made on what was
    opened (``fstat``), so the file read is the file checked.
    """
    environ = os.environ if environ is None else environ
    if token_file is not None:
        path = Path(token_file)
        return check_token(_read_token_file(path), f"--token-file {path}")
    text = environ.get(TOKEN_ENV, "").strip()
    return check_token(text, TOKEN_ENV) if text else None


def _read_token_file(path: Path) -> str:
    """The text of a token file, after the owner and mode checks on the opened file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a FIFO is refused below, not waited on
    except OSError as exc:
        raise ConfigError(f"--token-file: cannot read it ({exc.strerror or exc})", path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("--token-file: not a plain file", path)
        if info.st_uid != os.geteuid():
            raise ConfigError(
                f"--token-file: owned by user id {info.st_uid}, not by the user running the "
                f"service ({os.geteuid()}); a token another user controls protects nothing: "
                "make it yours (chown) and chmod 600 it",
                path,
            )
        if info.st_mode & 0o077:
            raise ConfigError(
                f"--token-file: other users may read or write it (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); a token anyone else on this machine can "
                "read protects nothing: chmod 600 it",
                path,
            )
        data = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--token-file: cannot read it ({exc.strerror or exc})", path) from None
    finally:
        os.close(fd)
    if len(data) > MAX_TOKEN_FILE_BYTES:
        raise ConfigError(
            f"--token-file: not a token file (over {MAX_TOKEN_FILE_BYTES} bytes)", path
        )
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError("--token-file: cannot read it as ASCII text", path) from None


def check_token(token: str, source: str) -> str:
    """``token`` if it can serve as a bearer token (long enough, b64token characters)."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"{source}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} "
            f"(a short token can be guessed); {MAKE_TOKEN}"
        )
    if not _TOKEN.fullmatch(token):
        raise ConfigError(
            f"{source}: the token may hold only letters, digits and -._~+/ (an HTTP bearer "
            f"token); {MAKE_TOKEN}"
        )
    return token
