"""The few ``sqlite_utils`` calls :mod:`latency.store` makes, on the standard library's sqlite3.

Installed as ``sqlite_utils`` by :mod:`profilers.standalone` only when the real package is absent (a
device with just onnxruntime, onnx and numpy): ``Database(conn)``, ``db.conn``, ``db[table].insert(row,
ignore=True)``, ``db[table].insert_all(rows, ignore=True)`` and ``db.close()``. The schema itself is
created by plain SQL in the store, so the database written is the same file either way.
"""

from __future__ import annotations


class Table:
    def __init__(self, db, name: str):
        self.db, self.name = db, name

    def insert_all(self, rows, ignore: bool = False):
        rows = [dict(r) for r in rows]
        if not rows:
            return self
        cols = list(rows[0])
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        sql = (f'{verb} INTO "{self.name}" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
               f'VALUES ({", ".join("?" for _ in cols)})')
        self.db.conn.executemany(sql, [tuple(r.get(c) for c in cols) for r in rows])
        return self

    def insert(self, row, ignore: bool = False):
        return self.insert_all([row], ignore=ignore)


class Database:
    def __init__(self, conn, execute_plugins: bool = False):
        self.conn = conn

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    def close(self):
        self.conn.close()
