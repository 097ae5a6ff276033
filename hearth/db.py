"""The database: SQLite at `$HEARTH_HOME/hearth.db` by default, PostgreSQL when
`HEARTH_DATABASE_URL` says so. Holds the declarative `Base`; each layer defines its own
tables on it and asks for them with `ensure_tables`. Knows nothing of what is stored."""

from __future__ import annotations

import functools
import sqlite3
import threading
from pathlib import Path

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from hearth.errors import StoreError


class Base(DeclarativeBase):
    pass


_engines: dict[str, Engine] = {}
# one engine per URL for the whole process: SQLAlchemy pools connections per engine
_lock = threading.Lock()


def get_engine(url: str) -> Engine:
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            if url.startswith("sqlite:///"):
                path = Path(url.removeprefix("sqlite:///"))
                path.parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
                event.listen(engine, "connect", functools.partial(_sqlite_pragmas, path))
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def _sqlite_pragmas(path: Path, dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers (hearth list) run while a pull writes
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
    except sqlite3.DatabaseError as exc:  # the first statement on a file that is not SQLite
        raise StoreError(
            f"the database {path} is not usable ({exc}); move it aside (hearth starts a new "
            "one; the models in the store are kept) or restore it from a backup"
        ) from exc
    finally:
        cur.close()


def ensure_tables(engine: Engine, *tables: Table) -> None:
    """Create the tables that do not exist yet. Safe when several processes (two `hearth
    pull`s, a server's first requests) do it at once."""
    try:
        Base.metadata.create_all(engine, tables=list(tables))
    except (OperationalError, ProgrammingError):
        # another process created a table between create_all's check and its CREATE; the
        # second pass sees it and creates only what is still missing
        Base.metadata.create_all(engine, tables=list(tables))


def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)
