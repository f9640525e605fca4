"""Is a database there? One check for every database URL the sweep is given (its MLflow store, its Optuna
storage), made before anything is written: a driver's own retries take minutes to give up on a host that does not
answer (a PostgreSQL tracking URI on a closed port had not failed after 75 s, issue 16)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy

TIMEOUT_SECONDS = 5


class DatabaseError(ValueError):
    """A database URL that cannot be used; the message names it (password hidden) and says why."""


def shown(url: str) -> str:
    """The URL as messages show it: any password masked."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def check_database(url: str, label: str, timeout: int = TIMEOUT_SECONDS) -> None:
    """Raises DatabaseError unless the database at `url` takes a connection within `timeout` seconds. A SQLite
    file need not exist yet (it is created on first use), but its folder must: SQLite would create the file and
    fail only when the sweep first writes. `label` says which option gave the URL (e.g. --tracking-uri)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:  # its message does not repeat the URL
        raise DatabaseError(f"{label}: not a database URL (e.g. postgresql://USER@HOST:5432/DATABASE)") from None
    where = f"{label} {parsed.render_as_string(hide_password=True)}"
    if parsed.get_backend_name() == "sqlite":
        folder = Path(parsed.database or "").expanduser().absolute().parent
        if parsed.database and not folder.is_dir():
            raise DatabaseError(f"{where}: the folder {folder} does not exist; create it, or give another path")
        return
    options = {"connect_timeout": timeout} if parsed.get_backend_name() in ("postgresql", "mysql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=options, poolclass=sqlalchemy.pool.NullPool)
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as error:
        raise DatabaseError(
            f"{where}: its database driver is not installed ({error}); pip install 'dss-sweep[team]' installs "
            "PostgreSQL's (psycopg)"
        ) from None
    try:
        with engine.connect():
            pass
    except sqlalchemy.exc.DBAPIError as error:
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise DatabaseError(
            f"{where}: cannot connect ({reason}); PostgreSQL takes the password from the URL, PGPASSWORD or ~/.pgpass"
        ) from None
    finally:
        engine.dispose()
