"""The LanceDB connection of one index folder and its open tables."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from sr3desk.errors import IndexAccessError

log = logging.getLogger(__name__)


class Connection:
    """An embedded LanceDB database; tables are opened once and cached.

    Readers check for a newer table version on every query
    (``read_consistency_interval=0``), so they see each commit of the writer.
    """

    def __init__(self, index_dir: Path) -> None:
        import lancedb

        try:
            self.db = lancedb.connect(str(index_dir), read_consistency_interval=timedelta(0))
        except (OSError, RuntimeError, ValueError) as exc:
            raise IndexAccessError(f"Cannot open the index in {index_dir}: {exc}") from exc
        self._tables: dict[str, Any] = {}

    def table(self, name: str) -> Any:
        """The open table ``name``."""
        table = self._tables.get(name)
        if table is None:
            table = self.db.open_table(name)
            self._tables[name] = table
        return table

    def names(self) -> list[str]:
        """Names of the tables on disk."""
        names: list[str] = []
        token = None
        while True:
            page = self.db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def create(self, name: str, schema: pa.Schema) -> Any:
        """Create ``name`` (empty) unless it exists; returns the open table."""
        table = self.db.create_table(name, schema=schema, exist_ok=True)
        self._tables[name] = table
        return table

    def drop(self, name: str) -> None:
        """Drop ``name`` if it exists."""
        self._tables.pop(name, None)
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            self.db.drop_table(name)  # may be gone already

    def forget(self) -> None:
        """Close the cached tables (after a generation swap, or to close)."""
        self._tables.clear()
