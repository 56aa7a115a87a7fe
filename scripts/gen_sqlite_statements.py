"""Write datastore/sqlite_statements.json: the datastore's statements compiled for SQLite.

Run: python scripts/gen_sqlite_statements.py

The statements are defined in SQLAlchemy Core (``datastore.schema``); the SQLite datastore
runs this compiled text so it never imports SQLAlchemy. Re-run after changing a definition
(``tests/unit/test_datastore.py`` fails while the file is stale).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from datastore.schema import sqlite_statements  # noqa: E402

out = REPO / "datastore" / "sqlite_statements.json"
out.write_text(json.dumps(sqlite_statements(), indent=1, sort_keys=True) + "\n")
print(f"wrote {out}")
