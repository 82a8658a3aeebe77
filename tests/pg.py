"""A PostgreSQL cluster of the test session: Debian's PostgreSQL 15 + PostGIS 3 (installed
by scripts/install-postgres.sh), started with ``initdb`` + ``pg_ctl`` in a temporary
folder on a free 127.0.0.1 port, never the system service. One database holds pgstac's
schema (``pypgstac migrate``); every test gets a fresh copy of it (``CREATE DATABASE ...
TEMPLATE``), which takes a fraction of a second where a migration takes seconds.

PostgreSQL refuses to run as root: when the tests do, the cluster runs as the ``postgres``
user that Debian's package creates, in a folder that user owns."""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from live import free_port

PG_BIN = Path(os.environ.get("EOSHARE_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "eoshare_pgstac_template"
# a test cluster: durability traded for speed (its folder is thrown away anyway)
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "128MB",
    "max_connections": "200",
    "log_min_messages": "warning",
    "jit": "off",
}


class PgCluster:
    """One throwaway PostgreSQL cluster; ``url()`` of a database, ``new_catalog_url()``
    of a fresh pgstac database."""

    def __init__(self, template: bool = True) -> None:
        self.template = template
        if not (PG_BIN / "initdb").is_file():
            pytest.fail(
                f"PostgreSQL is missing ({PG_BIN}/initdb): run scripts/install-postgres.sh "
                "(make test does)",
                pytrace=False,
            )
        self.root = Path(tempfile.mkdtemp(prefix="eoshare-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres"
        self._runas: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the 'postgres' user", pytrace=False)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self._runas = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [*self._runas, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            pytest.fail(f"{args[0]} failed:\n{done.stdout}\n{done.stderr}", pytrace=False)

    def start(self) -> None:
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", self.user,
            "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        options = " ".join(f"-c {k}={v}" for k, v in SETTINGS.items())
        options += f" -p {self.port} -k {self.root}"
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        if self.template:
            self._migrate_template()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def _migrate_template(self) -> None:
        from pypgstac.db import PgstacDB
        from pypgstac.migrate import Migrate

        self.execute(f"CREATE DATABASE {TEMPLATE}")
        started = time.monotonic()
        db = PgstacDB(dsn=self.url(TEMPLATE))
        try:
            Migrate(db).run_migration()
        finally:
            db.close()
        # a template must have no sessions; pypgstac's pool may keep one open a while
        self.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{TEMPLATE}' AND pid <> pg_backend_pid()"
        )
        self.migrate_s = time.monotonic() - started

    def new_database(self) -> str:
        """A fresh database with pgstac's schema; its name."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE} STRATEGY FILE_COPY")
        return name

    def new_state_database(self) -> str:
        """A fresh, empty database (for node state: eoshare.statedb makes its schemas)."""
        name = f"s{os.getpid()}_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def new_catalog_url(self) -> str:
        """The ``EOSHARE_CATALOG`` URL of a fresh pgstac database."""
        return self.url(self.new_database())


@contextlib.contextmanager
def pg_cluster(template: bool = True) -> Iterator[PgCluster]:
    """A started cluster; ``template=False``: a bare one (a new server, no pgstac)."""
    cluster = PgCluster(template)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
