"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests and benchmarks.

``OWNERVAULT_TEST_POSTGRES`` (a URL to a maintenance database such as
``postgresql://postgres@127.0.0.1:5433/postgres``) points at a server that is already running,
as CI's ``.ci/run`` starts one. Without it, :class:`Cluster` makes its own: ``initdb`` in a
temporary directory, ``pg_ctl start`` on a free port, listening on 127.0.0.1 only, and
``pg_ctl stop`` plus removal of the directory at the end. As root, the server runs as the
``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

ENV_URL = "OWNERVAULT_TEST_POSTGRES"

#: Settings for a test cluster: nothing here needs to survive a power cut.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


def bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest installed version), or None."""
    env = os.environ.get("PG_BIN")
    candidates = [env] if env else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """An initdb'ed, started PostgreSQL cluster in a temporary directory; ``stop()`` removes it."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        found = bin_dir()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found")
        self.bin = found
        self.settings = dict(FAST_SETTINGS if settings is None else settings)
        self.root = Path(tempfile.mkdtemp(prefix="ownervault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.started = False

    @property
    def url(self) -> str:
        """URL of the cluster's ``postgres`` maintenance database (trust auth, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> Cluster:
        """initdb and start the server; raise with the server log if it does not come up."""
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"]
        options += [f"-c {name}={value}" for name, value in self.settings.items()]
        try:
            self._run(
                "pg_ctl", "-D", str(self.data), "-o", " ".join(options), "-l", str(self.log),
                "-w", "-t", "60", "start",
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc.stderr!r}\n{log}") from None
        self.started = True
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self.started:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


def database_url(server_url: str, name: str) -> str:
    """``server_url`` pointing at database ``name`` instead (query string kept)."""
    head, _, query = server_url.partition("?")
    base = head.rsplit("/", 1)[0] if head.count("/") > 2 else head
    return f"{base}/{name}" + (f"?{query}" if query else "")


def create_database(server_url: str, prefix: str = "ov_test") -> str:
    """Create an empty database on the server; return its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop a database made by :func:`create_database` (its sessions are ended first)."""
    import psycopg

    name = url.partition("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clone_database(server_url: str, template_url: str, prefix: str = "ov_copy") -> str:
    """A new database copied from ``template_url``'s (which nobody may be connected to)."""
    import psycopg

    template = template_url.partition("?")[0].rsplit("/", 1)[1]
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return database_url(server_url, name)


@contextlib.contextmanager
def server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """The URL of a usable server: ``$OWNERVAULT_TEST_POSTGRES``, else a throwaway cluster."""
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    cluster = Cluster(settings).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
