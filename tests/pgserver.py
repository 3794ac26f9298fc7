"""A throwaway PostgreSQL server for the tests of the shared store.

``initdb`` in a temporary directory as an unprivileged user (PostgreSQL refuses to run
as root: the ``postgres`` system user, created if missing), ``pg_ctl`` on a free loopback
port, password authentication on TCP (so the tests can prove the password never shows),
stopped and removed at the end. When ``initdb`` is missing and we are root with apt-get,
Debian's ``postgresql`` package is installed first.

Used by the ``pg_server`` fixture (tests/conftest.py); ``python tests/pgserver.py``
starts one and prints its URL (for the benchmark).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

USER = "overnight"
PASSWORD = "pg-secret-" + uuid.uuid4().hex[:12]  # the tests grep every output for it
DATABASE = "overnight"


class Unavailable(Exception):
    """No server can be started here; the message says why."""


def _find(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return candidates[-1] if candidates else None


def _install() -> None:
    """Debian's postgresql package, when we may (root, apt-get)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Unavailable("initdb not found (install Debian's postgresql package, or run as root to let the tests do it)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"{' '.join(argv)} failed: {done.stderr.strip()[-500:]}")


def _as_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix that runs a tool as an unprivileged user, and that user's ids."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
                       check=True, capture_output=True)
        entry = pwd.getpwnam("postgres")
    runner = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else ["su", "postgres", "-s", "/bin/sh", "-c"]
    return runner, entry.pw_uid, entry.pw_gid


@contextlib.contextmanager
def _machine_setup() -> Iterator[None]:
    """One test process at a time installs the package and adds its user (pytest-xdist
    workers start their servers at once, and apt-get and useradd each take a lock)."""
    with open(Path(tempfile.gettempdir()) / "overnight-pg-setup.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One running server; :attr:`url` reaches its ``overnight`` database."""

    def __init__(self) -> None:
        with _machine_setup():
            initdb = _find("initdb")
            if initdb is None:
                _install()
                initdb = _find("initdb")
                if initdb is None:
                    raise Unavailable("initdb is still missing after installing postgresql")
            self.prefix, uid, gid = _as_user()
        pg_ctl = _find("pg_ctl") or str(Path(initdb).with_name("pg_ctl"))
        self.pg_ctl = pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="overnight-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if uid is not None:
            os.chmod(self.root, 0o700)
            os.chown(self.root, uid, gid or -1)
            os.chown(pwfile, uid, gid or -1)
        self._run([initdb, "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth-local=trust",
                   "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        pwfile.unlink()
        # fsync off: a test server holds nothing worth a power-loss guarantee, and it is faster.
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start"])
        self.url = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"
        self._admin(f"CREATE DATABASE {DATABASE}", database="postgres")

    def _run(self, argv: list[str]) -> None:
        if self.prefix[-1:] == ["-c"]:  # su takes one command line
            argv = [*self.prefix, shlex.join(argv)]
        else:
            argv = [*self.prefix, *argv]
        done = subprocess.run(argv, capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            extra = log.read_text()[-1000:] if log.exists() else ""
            raise Unavailable(f"{' '.join(argv[:6])} failed: {done.stdout[-500:]} {done.stderr[-1000:]} {extra}")

    def _admin(self, sql: str, database: str = DATABASE) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}",
                             autocommit=True) as conn:
            conn.execute(sql)

    def schema_url(self) -> str:
        """The URL of a new, empty schema of the database (one store per test)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._admin(f"CREATE SCHEMA {name}")
        return f"{self.url}?options=-csearch_path%3D{name}"

    def stop(self) -> None:
        with_prefix = [self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        try:
            self._run(with_prefix)
        except Unavailable:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover - a manual helper
    import sys
    import time

    server = Server()
    print(server.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
        sys.exit(0)
