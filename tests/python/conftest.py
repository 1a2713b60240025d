"""A live flaglog for the Python SDK tests: `flaglog serve` on a free loopback port over a fresh
database, with an administrator made by `flaglog admin create` and documents imported with
`flaglog import --environment-document FILE`, stopped when the session ends.

The binary is $FLAGLOG_BIN (scripts/test builds it and sets it), else target/debug/flaglog.
The `flaglog_server` fixture runs every test that uses it on SQLite and, when $DATABASE_URL is a
PostgreSQL admin URL, on a fresh PostgreSQL database made through it (dropped at the end). A
server that cannot start fails the tests; so does an unreachable PostgreSQL when $DATABASE_URL
names one or $FLAGLOG_REQUIRE_POSTGRES is set. Only the PostgreSQL variant is ever skipped, and
only when no PostgreSQL was asked for.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
# How long the server may take to start, and an import to be served.
STARTUP_SECONDS = 30
SERVED_SECONDS = 15


def reference_dir():
    """The folder holding conformance/: $FLAGLOG_REFERENCE_DIR, else shared/ beside the repo."""
    folder = Path(
        os.environ.get(
            "FLAGLOG_REFERENCE_DIR", REPO.parent / "shared" / "reference" / "flagsmith"
        )
    )
    if not (folder / "conformance").is_dir():
        pytest.fail(
            f"Flagsmith conformance data not found at {folder} "
            "(set FLAGLOG_REFERENCE_DIR to the folder holding conformance/)"
        )
    return folder


def flaglog_binary():
    binary = Path(os.environ.get("FLAGLOG_BIN", REPO / "target" / "debug" / "flaglog"))
    if not binary.is_file():
        pytest.fail(
            f"no flaglog binary at {binary}: run `cargo build -p api --bin flaglog` "
            "or set FLAGLOG_BIN"
        )
    return binary


def psql_binary():
    found = shutil.which("psql") or next(
        iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"), reverse=True)), None
    )
    if not found:
        pytest.fail("DATABASE_URL names PostgreSQL but there is no psql to create a database")
    return found


def psql(admin_url, sql):
    done = subprocess.run(
        [psql_binary(), admin_url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        pytest.fail(f"psql {sql!r} failed: {done.stderr}")


class Flaglog:
    """One running `flaglog serve` and the CLI over the same database."""

    def __init__(self, backend, database_url, workdir):
        self.backend = backend
        self.binary = flaglog_binary()
        self.workdir = Path(workdir)
        self.env = dict(os.environ, DATABASE_URL=database_url, RUST_LOG="warn")
        self.process = None
        self.base = None
        self.token = None
        self._documents = 0

    def cli(self, *args):
        """Runs a flaglog command; returns its last stdout line, failing the test if it fails."""
        done = subprocess.run(
            [str(self.binary), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            pytest.fail(
                f"flaglog {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return lines[-1]

    def start(self, with_admin=True):
        """Starts the server; first makes an administrator with the CLI unless told not to
        (the dashboard's first run needs a flaglog without users)."""
        if with_admin:
            self.token = self.cli("admin", "create", "--email", "admin@example.com")
        self.log_path = self.workdir / "server.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(self.binary), "serve", "--bind", "127.0.0.1:0"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(
                    f"flaglog serve ({self.backend}) exited with {self.process.returncode}:\n"
                    f"{self.log_path.read_text()}"
                )
            found = re.search(r"listening on (http://\S+)", self.log_path.read_text())
            if found:
                self.base = found.group(1)
                break
            time.sleep(0.02)
        else:
            pytest.fail(
                f"flaglog serve ({self.backend}) did not start:\n{self.log_path.read_text()}"
            )
        health = requests.get(f"{self.base}/health", timeout=10)
        assert health.status_code == 200, health.text

    def stop(self):
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()

    @property
    def api_url(self):
        return f"{self.base}/api/v1/"

    def admin(self, method, path, body=None):
        """An admin API request with the administrator's token."""
        return requests.request(
            method,
            f"{self.base}{path}",
            json=body,
            headers={"Authorization": f"Token {self.token}"},
            timeout=30,
        )

    def import_document(self, document):
        """Imports an environment document with the CLI and waits until the SDK endpoints serve
        it; returns the import's JSON (client_key, server_side_key, ...)."""
        self._documents += 1
        path = self.workdir / f"document-{self._documents}.json"
        path.write_text(json.dumps(document))
        imported = json.loads(self.cli("import", "--environment-document", str(path)))
        self.wait_served(imported["client_key"])
        return imported

    def wait_served(self, client_key):
        deadline = time.monotonic() + SERVED_SECONDS
        last = None
        while time.monotonic() < deadline:
            last = requests.get(
                f"{self.base}/api/v1/flags/",
                headers={"X-Environment-Key": client_key},
                timeout=10,
            )
            if last.status_code == 200:
                return
            time.sleep(0.02)
        pytest.fail(
            f"{self.backend}: the imported environment {client_key} was not served within "
            f"{SERVED_SECONDS} s (last answer {last.status_code}: {last.text})"
        )


def postgres_admin_url():
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql://")):
        return url
    if os.environ.get("FLAGLOG_REQUIRE_POSTGRES"):
        pytest.fail("FLAGLOG_REQUIRE_POSTGRES is set but DATABASE_URL is no PostgreSQL URL")
    return None


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def flaglog_server(request):
    """A running flaglog on each backend (see the module's doc)."""
    yield from running_flaglog(request.param, with_admin=True)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_flaglog(request):
    """A running flaglog on each backend with no user yet, for one test."""
    yield from running_flaglog(request.param, with_admin=False)


def running_flaglog(backend, with_admin):
    with tempfile.TemporaryDirectory(prefix=f"flaglog-sdk-{backend}-") as workdir:
        dropped = None
        if backend == "sqlite":
            database_url = f"sqlite://{workdir}/flaglog.db"
        else:
            admin_url = postgres_admin_url()
            if admin_url is None:
                pytest.skip("DATABASE_URL is not a PostgreSQL admin URL")
            name = f"flaglog_py_{uuid.uuid4().hex[:12]}"
            psql(admin_url, f'CREATE DATABASE "{name}"')
            parts = urlsplit(admin_url)
            database_url = urlunsplit(parts._replace(path=f"/{name}"))
            dropped = (admin_url, name)
        server = Flaglog(backend, database_url, workdir)
        try:
            server.start(with_admin=with_admin)
            yield server
        finally:
            server.stop()
            if dropped:
                admin_url, name = dropped
                psql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
