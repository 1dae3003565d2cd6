"""The profile database: the only module that speaks SQL.

One SQLite file (WAL mode) holds targets, measuring protocols, profiling runs and one row per
measured kernel configuration. All latencies are in microseconds (``*_us`` columns). Every write
is one ``BEGIN IMMEDIATE`` transaction, so a killed profiler never leaves a half-written batch and
concurrent writers queue on ``busy_timeout`` instead of failing.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import random
import socket
import sqlite3
import time
import urllib.parse
import uuid
from datetime import datetime, timezone


from .errors import SchemaError, StoreError
from .ops import key_hash as _key_hash

SCHEMA_VERSION = 1
RUN_STATUSES = ("running", "done", "interrupted", "budget")
EXPORT_FORMATS = ("csv", "jsonl")

_TARGET_COLS = ("cpu_model", "cpu_flags", "gpu_name", "runtime", "runtime_version", "provider", "threads")
MEASUREMENT_COLS = ("target_id", "key_hash", "kind", "key", "precision", "sparsity", "latency_us", "median_us",
                    "spread", "n_rounds", "n_runs", "rounds_us", "canary_us", "unstable", "remeasured",
                    "kernel_ops", "source", "error", "run_id", "measured_at", "extra")
_JSON_COLS = ("rounds_us", "canary_us", "kernel_ops", "extra")
_DEFAULTS = {"unstable": 0, "remeasured": 0, "source": "measured"}
#: SQL: a latency_us a measurement can hold (finite, > 0 microseconds; NaN is stored as NULL)
_VALID_LATENCY = "(typeof(latency_us) IN ('real', 'integer') AND latency_us > 0 AND latency_us < 1e300)"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _hash16(obj) -> str:
    return hashlib.sha1(_canon(obj).encode()).hexdigest()[:16]


def _enc(v):
    return json.dumps(v, separators=(",", ":"), default=str) if isinstance(v, (dict, list, tuple)) else v


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists
        return True
    return True


def _dec(v):
    return json.loads(v) if isinstance(v, str) and v[:1] in ("[", "{") else v


def _migrate_0(db) -> None:  # db: a sqlite_utils.Database
    """v0 -> v1: create the schema from an empty database."""
    for sql in (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
        """CREATE TABLE targets (target_id TEXT PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
           cpu_model TEXT, cpu_flags TEXT, gpu_name TEXT, runtime TEXT, runtime_version TEXT, provider TEXT,
           threads INTEGER, created_at TEXT)""",
        "CREATE TABLE protocols (protocol_id TEXT PRIMARY KEY, name TEXT, spec TEXT NOT NULL)",
        """CREATE TABLE runs (run_id TEXT PRIMARY KEY, target_id TEXT NOT NULL REFERENCES targets(target_id),
           protocol_id TEXT REFERENCES protocols(protocol_id), plan TEXT, ops TEXT, argv TEXT, host TEXT,
           started_at TEXT, finished_at TEXT, status TEXT NOT NULL, n_measured INTEGER, n_failed INTEGER)""",
        """CREATE TABLE measurements (target_id TEXT NOT NULL REFERENCES targets(target_id),
           key_hash TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, precision TEXT, sparsity TEXT,
           latency_us REAL, median_us REAL, spread REAL, n_rounds INTEGER, n_runs INTEGER, rounds_us TEXT,
           canary_us TEXT, unstable INTEGER NOT NULL DEFAULT 0, remeasured INTEGER NOT NULL DEFAULT 0,
           kernel_ops TEXT, source TEXT NOT NULL DEFAULT 'measured', error TEXT,
           run_id TEXT REFERENCES runs(run_id), measured_at TEXT, extra TEXT,
           PRIMARY KEY (target_id, key_hash))""",
        "CREATE INDEX idx_measurements_target_kind ON measurements(target_id, kind)",
    ):
        db.conn.execute(sql)


#: MIGRATIONS[i] migrates schema version i to i + 1 (migration 0 creates the schema).
MIGRATIONS = [_migrate_0]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _enable_wal(conn, wait_s: float = 60.0) -> None:
    """Switch to WAL. The switch takes an exclusive lock and sqlite answers "database is locked" at
    once (its busy handler is not consulted) when another connection is opening the same file, so retry
    until the deadline."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _open_hint(path: str, e: Exception) -> str:
    """Why sqlite could not open ``path``, when the file system says so (sqlite only says "unable to open")."""
    if "unable to open" not in str(e) or path == ":memory:":
        return ""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        return f" (directory {d} does not exist)"
    if not os.access(d, os.W_OK) or not os.access(path if os.path.exists(path) else d, os.W_OK):
        return f" (directory {d} is not writable: sqlite needs to create the database and its -wal/-shm files there)"
    return f" (cannot create files in {d}: a read-only or special file system?)"


class Store:
    """A latency profile database at ``path`` (``":memory:"`` for tests)."""

    def __init__(self, path, readonly: bool = False):
        self.path = str(path)
        self.readonly = readonly and self.path != ":memory:"
        conn = None
        try:
            if self.readonly:
                if not os.path.isfile(self.path):
                    raise StoreError(f"profile database {self.path} does not exist")
                uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
                conn = sqlite3.connect(uri, uri=True, timeout=60)
            else:
                conn = sqlite3.connect(self.path, timeout=60)
            self.conn = conn
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails on a non-database
            if not self.readonly and self.path != ":memory:":
                _enable_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: safe against kills
            self._open_schema()
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise StoreError(f"cannot open profile database {self.path}: {e}{_open_hint(self.path, e)}") from None
        except StoreError:
            if conn is not None:
                conn.close()
            raise

    @property
    def db(self):
        """The sqlite_utils view of the connection, for writes (imported on first use: reads need only
        sqlite3, and sqlite_utils imports pandas when it is installed)."""
        d = self.__dict__.get("_db")
        if d is None:
            import sqlite_utils

            d = self._db = sqlite_utils.Database(self.conn, execute_plugins=False)
        return d

    def _version(self) -> int | None:
        names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not names:
            return None
        if "meta" not in names:
            raise SchemaError(f"{self.path} is not a latency profile database (no meta table)")
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            raise SchemaError(f"{self.path} is not a latency profile database (no schema_version)")
        try:
            return int(row[0])
        except (TypeError, ValueError):
            raise SchemaError(f"{self.path}: schema_version {row[0]!r} is not a number; the file is corrupt or "
                              "was edited by hand") from None

    def _open_schema(self) -> None:
        v = self._version()
        if v is not None and v > SCHEMA_VERSION:
            raise SchemaError(f"{self.path}: database schema v{v} is newer than this latency "
                              f"(v{SCHEMA_VERSION}); upgrade latency")
        if v == SCHEMA_VERSION:
            self._check_tables()
            return
        if self.readonly:
            raise SchemaError(f"{self.path} is not a latency profile database" if v is None else
                              f"{self.path}: database schema v{v} is older than v{SCHEMA_VERSION}; "
                              "open it writable once to migrate")
        with self._tx():  # re-read inside the write lock: another process may have migrated it
            v = self._version() or 0
            for i in range(v, SCHEMA_VERSION):
                MIGRATIONS[i](self.db)
                self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(i + 1),))

    def _check_tables(self) -> None:
        """SchemaError when a table of the current schema is missing (a tampered or half-copied file)."""
        names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in ("targets", "protocols", "runs", "measurements") if t not in names]
        if missing:
            raise SchemaError(f"{self.path}: schema v{SCHEMA_VERSION} database lacks table(s) {', '.join(missing)}; "
                              "the file is corrupt or was edited by hand")

    @contextlib.contextmanager
    def _tx(self):
        """One write transaction; sqlite errors become a one-line StoreError."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(f"profile database {self.path}: {e}") from None

    def _rows(self, sql: str, params=()) -> list[dict]:
        try:
            cur = self.conn.execute(sql, params)
            keys = [d[0] for d in cur.description]
            return [dict(zip(keys, row)) for row in cur]
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    # ---- targets, protocols, runs -----------------------------------------------------------

    def ensure_target(self, name: str, fingerprint: dict) -> str:
        """Register a target (idempotent); its id is the first 16 hex of sha1(canonical fingerprint)."""
        tid = _hash16(fingerprint)
        row = {"target_id": tid, "name": name, "fingerprint": _canon(fingerprint), "created_at": _now()}
        row.update({c: _enc(fingerprint.get(c)) for c in _TARGET_COLS})
        with self._tx():
            self.db["targets"].insert(row, ignore=True)
        return tid

    def ensure_protocol(self, name: str, spec: dict) -> str:
        """Register a measuring protocol (idempotent); its id is a hash of the canonical spec."""
        pid = _hash16(spec)
        with self._tx():
            self.db["protocols"].insert({"protocol_id": pid, "name": name, "spec": _canon(spec)}, ignore=True)
        return pid

    def start_run(self, target_id: str, protocol_id: str | None, plan: str, ops, argv) -> str:
        """Record a profiling run in status 'running'; returns its run_id (uuid4 hex). ``host`` names the
        machine and the process ("HOST pid N"), so that a later run can tell one that died unfinished."""
        run_id = uuid.uuid4().hex
        with self._tx():
            self.db["runs"].insert({"run_id": run_id, "target_id": target_id, "protocol_id": protocol_id,
                                    "plan": plan, "ops": _enc(list(ops)) if ops is not None else None,
                                    "argv": argv if isinstance(argv, str) or argv is None else _enc(list(argv)),
                                    "host": f"{socket.gethostname()} pid {os.getpid()}", "started_at": _now(), "finished_at": None,
                                    "status": "running", "n_measured": 0, "n_failed": 0})
        return run_id

    def finish_run(self, run_id: str, status: str, n_measured: int, n_failed: int) -> None:
        if status not in RUN_STATUSES:
            raise StoreError(f"unknown run status {status!r}; valid statuses: {', '.join(RUN_STATUSES)}")
        with self._tx() as conn:
            cur = conn.execute("UPDATE runs SET status=?, n_measured=?, n_failed=?, finished_at=? WHERE run_id=?",
                               (status, int(n_measured), int(n_failed), _now(), run_id))
            if cur.rowcount != 1:
                raise StoreError(f"unknown run {run_id!r} in {self.path}")

    def close_dead_runs(self) -> list[str]:
        """Mark 'interrupted' every run still 'running' that was started on this machine by a process that
        no longer exists (killed: SIGKILL, power loss, out of memory), with the rows it wrote counted and
        its last row's time as its end; returns their run_ids. Runs of other machines, and of a live
        process, are left as they are."""
        me = socket.gethostname()
        dead = []
        for run_id, host in self.conn.execute("SELECT run_id, host FROM runs WHERE status='running'").fetchall():
            name, _, pid = (host or "").rpartition(" pid ")
            if name != me or not pid.isdigit() or _alive(int(pid)):
                continue
            dead.append(run_id)
        if not dead:
            return []
        with self._tx() as conn:
            for run_id in dead:
                ok, failed, last = conn.execute(
                    "SELECT sum(error IS NULL), sum(error IS NOT NULL), max(measured_at) FROM measurements "
                    "WHERE run_id=?", (run_id,)).fetchone()
                conn.execute("UPDATE runs SET status='interrupted', n_measured=?, n_failed=?, "
                             "finished_at=COALESCE(?, started_at) WHERE run_id=? AND status='running'",
                             (int(ok or 0), int(failed or 0), last, run_id))
        return dead

    def _target_row(self, r: dict) -> dict:
        try:
            r["fingerprint"] = json.loads(r["fingerprint"])
            r["cpu_flags"] = _dec(r["cpu_flags"])
        except (TypeError, ValueError):
            raise StoreError(f"profile database {self.path}: target {r.get('name')!r} has a fingerprint that is "
                             "not JSON; the file is corrupt or was edited by hand") from None
        return r

    def targets(self) -> list[dict]:
        """All targets, oldest first (fingerprint decoded to a dict)."""
        return [self._target_row(r) for r in self._rows("SELECT * FROM targets ORDER BY created_at, target_id")]

    def target(self, target_id: str) -> dict | None:
        rows = self._rows("SELECT * FROM targets WHERE target_id=?", (target_id,))
        return self._target_row(rows[0]) if rows else None

    def find_target(self, name: str) -> str | None:
        """The target_id of the most recently registered target called ``name``, or None."""
        rows = self._rows("SELECT target_id FROM targets WHERE name=? ORDER BY created_at DESC LIMIT 1", (name,))
        return rows[0]["target_id"] if rows else None

    # ---- measurements -----------------------------------------------------------------------

    def done_hashes(self, target_id: str, include_failed: bool = True) -> set[str]:
        """key_hashes already stored for a target (without failed rows when include_failed=False)."""
        sql = "SELECT key_hash FROM measurements WHERE target_id=?" + ("" if include_failed else " AND error IS NULL")
        try:
            return {r[0] for r in self.conn.execute(sql, (target_id,))}
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    def _norm(self, row: dict) -> tuple:
        bad = set(row) - set(MEASUREMENT_COLS)
        if bad:
            raise StoreError(f"unknown measurement column(s) {', '.join(sorted(bad))}; "
                             f"valid: {', '.join(MEASUREMENT_COLS)}")
        r = {**_DEFAULTS, "measured_at": _now(), **row}
        if "key" not in r or "target_id" not in r:
            raise StoreError("a measurement row needs at least target_id and key")
        if r.get("key_hash") is None:
            r["key_hash"] = _key_hash(r["key"])
        if r.get("kind") is None or "precision" not in r or "sparsity" not in r:
            k = json.loads(r["key"])
            r.setdefault("precision", k.get("precision"))
            r.setdefault("sparsity", k.get("sparsity"))
            r["kind"] = r.get("kind") or k.get("kind")
        r["unstable"] = int(bool(r["unstable"]))
        return tuple(_enc(r.get(c)) for c in MEASUREMENT_COLS)

    def _upsert(self, conn, rows: list[dict], when: str) -> int:
        cols = ", ".join(MEASUREMENT_COLS)
        sets = ", ".join(f"{c}=excluded.{c}" for c in MEASUREMENT_COLS[2:])
        sql = (f"INSERT INTO measurements ({cols}) VALUES ({', '.join('?' * len(MEASUREMENT_COLS))}) "
               f"ON CONFLICT(target_id, key_hash) DO UPDATE SET {sets} WHERE {when}")
        before = conn.total_changes
        conn.executemany(sql, [self._norm(r) for r in rows])
        return conn.total_changes - before

    def upsert_measurements(self, rows: list[dict]) -> int:
        """Insert or replace measurement rows (one transaction), keyed by (target_id, key_hash).

        Latencies are microseconds. dict/list values are stored as JSON. A later row replaces an
        earlier one, except that a failed row (``error`` set) never replaces a successful one.
        Returns the number of rows written.
        """
        if not rows:
            return 0
        with self._tx() as conn:
            return self._upsert(conn, rows, "excluded.error IS NULL OR measurements.error IS NOT NULL")

    def measurements(self, target_id: str | None = None, kind: str | None = None, ok_only: bool = False):
        """Measurement rows as a pandas DataFrame (JSON columns decoded; latencies in microseconds)."""
        import pandas as pd

        where, params = ["1=1"], []
        if target_id is not None:
            where.append("target_id=?")
            params.append(target_id)
        if kind is not None:
            where.append("kind=?")
            params.append(kind)
        if ok_only:
            where.append("error IS NULL")
        rows = self._rows(f"SELECT * FROM measurements WHERE {' AND '.join(where)} "
                          "ORDER BY target_id, kind, key_hash", params)
        for r in rows:
            for c in _JSON_COLS:
                r[c] = self._dec_col(r, c)
        return pd.DataFrame(rows, columns=list(MEASUREMENT_COLS))

    def key_latencies(self, target_id: str, sparse: bool | None = None) -> list[tuple[str, float]]:
        """``(key, latency_us)`` of a target's successful rows (``sparse``: only the sparse ones, or only
        the dense ones): the two columns the estimator's evidence reads, without decoding the rest."""
        cond = "" if sparse is None else " AND sparsity != '0'" if sparse else " AND sparsity = '0'"
        try:
            return self.conn.execute(
                "SELECT key, latency_us FROM measurements WHERE target_id=? AND error IS NULL "
                f"AND latency_us IS NOT NULL{cond} ORDER BY kind, key_hash", (target_id,)).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    def group_counts(self, target_id: str, sparse: bool = False) -> dict[tuple[str, str], int]:
        """{(kind, precision): successful rows} of a target, dense rows only (``sparse``: sparse only)."""
        try:
            return {(k, p): n for k, p, n in self.conn.execute(
                "SELECT kind, precision, count(*) FROM measurements WHERE target_id=? AND error IS NULL AND "
                f"latency_us IS NOT NULL AND sparsity {'!=' if sparse else '='} '0' GROUP BY kind, precision",
                (target_id,))}
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    def _dec_col(self, r: dict, c: str):
        """The decoded JSON column ``c`` of row ``r``; StoreError naming the file when it is not JSON."""
        try:
            return _dec(r[c])
        except ValueError:
            raise StoreError(f"profile database {self.path}: column {c} of row {r.get('key_hash')!r} is not JSON; "
                             "the file is corrupt or was edited by hand") from None

    def latency_table(self, target_id: str) -> dict[str, float]:
        """{key_hash: latency_us} of a target's successful measurements (one SELECT).

        StoreError when a successful row holds a latency that no measurement gives (text, zero,
        negative, infinite): the file was tampered with, and a table with such rows is refused
        rather than priced as 0. A row without error and without latency (NaN is stored as NULL) too."""
        try:
            bad = self.conn.execute(
                f"SELECT count(*), min(key_hash), min(quote(latency_us)) FROM measurements WHERE target_id=? AND "
                f"error IS NULL AND NOT {_VALID_LATENCY}", (target_id,)).fetchone()
            if bad[0]:
                raise StoreError(f"profile database {self.path}: {bad[0]} successful measurement row(s) hold an "
                                 f"invalid latency_us (e.g. {bad[2]} in row {bad[1]}; valid: a finite number > 0 us); "
                                 "the file is corrupt or was edited by hand")
            return dict(self.conn.execute(
                "SELECT key_hash, latency_us FROM measurements WHERE target_id=? AND error IS NULL "
                "AND latency_us IS NOT NULL", (target_id,)))
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    def row_sources(self, target_id: str) -> dict[str, str]:
        """{key_hash: source} of a target's successful rows that were not measured on it (e.g.
        ``transferred`` from another device's profile); rows measured here are left out."""
        try:
            return dict(self.conn.execute(
                "SELECT key_hash, source FROM measurements WHERE target_id=? AND error IS NULL AND "
                "source != 'measured'", (target_id,)))
        except sqlite3.Error as e:
            raise StoreError(f"profile database {self.path}: {e}") from None

    def delete_rows(self, target_id: str, source: str) -> int:
        """Delete a target's rows of ``source`` (never 'measured' ones); returns how many."""
        if source == "measured":
            raise StoreError("measured rows are never deleted")
        with self._tx() as conn:
            return conn.execute("DELETE FROM measurements WHERE target_id=? AND source=?",
                                (target_id, source)).rowcount

    def stats(self, target_id: str | None = None):
        """Coverage per (target, kind, precision, sparsity): n_ok, n_failed, n_unstable, median_latency_us."""
        import pandas as pd

        sql = ("SELECT t.name AS target, m.kind, m.precision, m.sparsity, m.latency_us, m.unstable, "
               "m.error IS NULL AS ok FROM measurements m JOIN targets t ON t.target_id = m.target_id")
        rows = self._rows(sql + (" WHERE m.target_id=?" if target_id else ""), (target_id,) if target_id else ())
        cols = ["target", "kind", "precision", "sparsity", "n_ok", "n_failed", "n_unstable", "median_latency_us"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows)
        df["latency_us"] = pd.to_numeric(df["latency_us"], errors="coerce")  # a tampered text value: no median
        df["failed"] = 1 - df["ok"]
        df["unstable"] = df["unstable"] * df["ok"]
        df["lat_ok"] = df["latency_us"].where(df["ok"] == 1)
        g = df.groupby(["target", "kind", "precision", "sparsity"], dropna=False)
        out = g.agg(n_ok=("ok", "sum"), n_failed=("failed", "sum"), n_unstable=("unstable", "sum"),
                    median_latency_us=("lat_ok", "median")).reset_index()
        return out[cols]

    # ---- whole-database operations ----------------------------------------------------------

    def export(self, out_path, fmt: str) -> int:
        """Write every measurement with its target name and run's protocol_id as csv or jsonl; returns rows."""
        if fmt not in EXPORT_FORMATS:
            raise StoreError(f"unknown export format {fmt!r}; valid formats: {', '.join(EXPORT_FORMATS)}")
        rows = self._rows("SELECT t.name AS target_name, r.protocol_id, m.* FROM measurements m "
                          "JOIN targets t ON t.target_id = m.target_id LEFT JOIN runs r ON r.run_id = m.run_id "
                          "ORDER BY m.target_id, m.kind, m.key_hash")
        # each row's device record provenance beside its own source: an emulated or derived profile's rows are
        # "measured" there (how the profile came about is the device's, not the row's)
        prov = {}
        for k, v in self.meta().items():
            if k.startswith("device:"):
                try:
                    prov[k[len("device:"):]] = json.loads(v).get("provenance") or "measured"
                except (ValueError, AttributeError):
                    prov[k[len("device:"):]] = ""
        rows = [dict(r, device_provenance=prov.get(r["target_name"], "measured")) for r in rows]
        cols = ["target_name", "device_provenance", "protocol_id", *MEASUREMENT_COLS]
        if self.path != ":memory:" and os.path.exists(out_path) and os.path.samefile(out_path, self.path):
            raise StoreError(f"refusing to export {self.path} onto itself: that would overwrite the profile with "
                             f"its {fmt} export; give another --out")
        try:
            with open(out_path, "w", newline="") as f:
                if fmt == "csv":
                    w = csv.DictWriter(f, fieldnames=cols)
                    w.writeheader()
                    w.writerows(rows)
                else:
                    for r in rows:
                        f.write(json.dumps({c: self._dec_col(r, c) if c in _JSON_COLS else r[c] for c in cols}) + "\n")
        except OSError as e:
            raise StoreError(f"cannot write export {out_path}: {e.strerror or e}") from None
        return len(rows)

    def merge_from(self, other_path, keep_both: bool = False, counts: bool = False):
        """Copy another profile's targets, protocols, runs, measurements and device records into this one.

        Provenance (target_id, run_id, protocol_id) is kept. Rows are keyed by (target_id, key_hash),
        the target_id being the hash of the device fingerprint, so merging the same shard twice, or two
        shards of one device, never doubles a row. On a conflict the better-settled measurement is
        kept: a successful row over a failed one, then the lower spread (the protocol's settledness
        measure); on a tie the row already here stays.

        A target name that this database already holds measured on another device (another
        fingerprint) is refused with both fingerprints side by side: an estimate reads one device per
        name, so the newer would silently shadow the older. ``keep_both=True`` keeps the incoming
        device's rows under their own target id renamed ``NAME@<id8>`` instead.

        Returns (targets added, measurement rows written), or with ``counts=True`` a dict with
        targets, added, replaced, kept (rows), renamed ({old name: new name}).
        """
        with Store(other_path, readonly=True) as other:
            tables = {t: other._rows(f"SELECT * FROM {t}") for t in ("targets", "protocols", "runs", "measurements")}
            other_meta = other.meta()
            for r in tables["measurements"]:
                lat = r.get("latency_us")
                if r.get("key_hash") != _key_hash(str(r.get("key"))) or (lat is None and r.get("error") is None) \
                        or (lat is not None and not (isinstance(lat, (int, float)) and 0 < lat < 1e300)):
                    raise StoreError(f"refusing to merge {other.path}: row {r.get('key_hash')!r} has a key that does "
                                     f"not match its key_hash or an invalid latency_us ({lat!r}); the file is corrupt "
                                     "or was edited by hand")
        mine = {}
        for t in self._rows("SELECT target_id, name, fingerprint FROM targets"):
            mine.setdefault(t["name"], {})[t["target_id"]] = t["fingerprint"]
        renamed = {}
        for t in tables["targets"]:
            here = mine.get(t["name"], {})
            if not here or t["target_id"] in here:
                continue
            if not keep_both:
                theirs = json.loads(t["fingerprint"])
                ours = json.loads(next(iter(here.values())))
                diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
                raise StoreError(f"refusing to merge {other_path}: target {t['name']} is measured on another device "
                                 f"there than here (" + "; ".join(f"{k} {ours.get(k)!r} here vs {theirs.get(k)!r} "
                                                                  "there" for k in diff)
                                 + "): pass --keep-both to keep both devices, the incoming one as "
                                 f"{t['name']}@{t['target_id'][:8]}")
            renamed[t["name"]] = f"{t['name']}@{t['target_id'][:8]}"
            t["name"] = renamed[t["name"]]
        with self._tx() as conn:
            before = conn.execute("SELECT count(*) FROM targets").fetchone()[0]
            for t in ("targets", "protocols", "runs"):
                if tables[t]:
                    self.db[t].insert_all(tables[t], ignore=True)
            n_targets = conn.execute("SELECT count(*) FROM targets").fetchone()[0] - before
            for k, v in other_meta.items():  # device records of the targets merged (never overwriting ours)
                if k.startswith("device:"):
                    name = k[len("device:"):]
                    conn.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (f"device:{renamed.get(name, name)}", v))
            have = set(conn.execute("SELECT target_id || '/' || key_hash FROM measurements").fetchall()) \
                if counts else set()
            n_rows = self._upsert(conn, tables["measurements"],
                                  "(measurements.latency_us IS NULL AND excluded.latency_us IS NOT NULL) OR "
                                  "(measurements.latency_us IS NOT NULL AND excluded.latency_us IS NOT NULL AND "
                                  "COALESCE(excluded.spread, 1e308) < COALESCE(measurements.spread, 1e308))")
        if not counts:
            return n_targets, n_rows
        added = sum(1 for r in tables["measurements"] if (f"{r['target_id']}/{r['key_hash']}",) not in have)
        return {"targets": n_targets, "added": added, "replaced": n_rows - added,
                "kept": len(tables["measurements"]) - n_rows, "renamed": renamed}

    def meta(self) -> dict:
        """The meta table as {key: value} (schema version, device records)."""
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, key: str, value: str) -> None:
        if key == "schema_version":
            raise StoreError("schema_version is kept by the migrations, not set by hand")
        with self._tx() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def target_summary(self, target_id: str) -> dict:
        """Rows ok / failed and the span of the runs that measured them (ISO times) for one target."""
        ok, failed = self.target_counts(target_id)
        return {"rows_ok": ok, "rows_failed": failed, **self.target_span(target_id)}

    def target_counts(self, target_id: str) -> tuple[int, int]:
        """(rows ok, rows failed) of one target: a scan of its rows (tens of ms on a shipped profile, so
        :func:`latency.profiles.read_profile` asks only when the counts are shown)."""
        counts = dict(self.conn.execute(
            "SELECT error IS NULL, count(*) FROM measurements WHERE target_id=? GROUP BY error IS NULL",
            (target_id,)).fetchall())
        return int(counts.get(1, 0)), int(counts.get(0, 0))

    def target_span(self, target_id: str) -> dict:
        """The first start and last end (ISO times) of the runs that measured one target."""
        first, last = self.conn.execute(
            "SELECT min(started_at), max(COALESCE(finished_at, started_at)) FROM runs WHERE target_id=?",
            (target_id,)).fetchone()
        return {"first": first, "last": last}

    def integrity_check(self) -> str:
        """'ok', or SQLite's integrity_check messages joined by '; '."""
        try:
            msgs = [r[0] for r in self.conn.execute("PRAGMA integrity_check")]
        except sqlite3.Error as e:
            return f"integrity_check failed: {e}"
        return "ok" if msgs == ["ok"] else "; ".join(msgs)

    def close(self) -> None:
        """Close; a writable file is left as one self-contained file in rollback-journal mode when no other
        connection holds it (the WAL folded in), so that it can be shipped and opened read-only; each writable
        open switches back to WAL. Another connection still open keeps it in WAL (tried, not waited for)."""
        if not self.readonly and self.path != ":memory:":
            try:
                self.conn.execute("PRAGMA busy_timeout=0")
                self.conn.execute("PRAGMA journal_mode=DELETE").fetchone()
            except sqlite3.Error:
                pass
        self.conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
