"""The generation pointer and its lifecycle.

The index is a set of generations, one per embedding model (or one without a
model: keyword search only). ``generations.json`` names the *active* generation,
which every read uses, and at most one *building* one: after a model change the
new model's generation is filled beside the old, which keeps serving until the
new one is complete; then the pointer is swapped (an atomic rename). The old one
is kept as the *previous* generation, so that going back to its model serves it
again at once (:meth:`Pointer.restore_previous`); the one it replaces there is
dropped a minute later. :meth:`Pointer.open_for_writer` holds the table of these
states and takes every decision on them. Vectors of two models are never in one table.

Each generation records the table *layout* it was written with. A generation of
an older layout stays readable; its writer upgrades it
(:mod:`sr3desk.index.maintenance`) before writing to it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sr3desk.errors import IndexAccessError

log = logging.getLogger(__name__)

META_FILE = "generations.json"
KEYWORD_MODEL = "keyword"  # model id of a generation without vectors
# Table layouts. 1: vectors in ``vectors_<key>`` with the filter columns only,
# so a vector search needed a second lookup of its passages. 2: vectors in
# ``embedded_<key>`` with every column of their passage (one read per search).
LAYOUT_SPLIT = 1
LAYOUT_EMBEDDED = 2
LAYOUT = LAYOUT_EMBEDDED  # what new generations are written with
RETIRED_GRACE_S = 60.0  # a swapped-out generation is dropped after this long


class ModelLike(Protocol):
    """What the store needs to know of a model (``ModelInfo`` has it)."""

    @property
    def model_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def path(self) -> Path: ...


@dataclass
class Generation:
    """One model's set of tables (``dim`` None: keyword only, no vector table)."""

    key: str
    model_id: str
    model_name: str = ""
    model_path: str | None = None
    dim: int | None = None
    created: float = 0.0
    tokens_per_s: float | None = None  # embedding speed last measured on this machine
    layout: int = LAYOUT
    ann_rows: int = 0  # vectors when the ANN index was last built (0: none)

    @property
    def files_table(self) -> str:
        return f"files_{self.key}"

    @property
    def chunks_table(self) -> str:
        return f"chunks_{self.key}"

    @property
    def vectors_table(self) -> str:
        return self.vectors_table_of(self.layout)

    def vectors_table_of(self, layout: int) -> str:
        """Name of this generation's vector table in ``layout``."""
        return f"vectors_{self.key}" if layout == LAYOUT_SPLIT else f"embedded_{self.key}"

    @property
    def outdated(self) -> bool:
        """True when the vector table is in an older layout than this code writes."""
        return self.dim is not None and self.layout < LAYOUT

    def table_names(self) -> list[str]:
        names = [self.files_table, self.chunks_table]
        return [*names, self.vectors_table] if self.dim is not None else names

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "model_id": self.model_id,
            "model_name": self.model_name,
            "model_path": self.model_path,
            "dim": self.dim,
            "created": self.created,
            "tokens_per_s": self.tokens_per_s,
            "layout": self.layout,
            "ann_rows": self.ann_rows,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Generation:
        return cls(
            key=str(raw["key"]),
            model_id=str(raw["model_id"]),
            model_name=str(raw.get("model_name") or ""),
            model_path=raw.get("model_path"),
            dim=int(raw["dim"]) if raw.get("dim") else None,
            created=float(raw.get("created") or 0.0),
            tokens_per_s=float(raw["tokens_per_s"]) if raw.get("tokens_per_s") else None,
            # Pointers written before layouts were recorded are layout 1.
            layout=int(raw.get("layout") or LAYOUT_SPLIT),
            ann_rows=int(raw.get("ann_rows") or 0),
        )


@dataclass
class Meta:
    """Contents of ``generations.json``: which generation serves, which is built."""

    active: str | None = None
    building: str | None = None
    previous: str | None = None  # served before the last swap, kept for a switch back
    gens: dict[str, Generation] = field(default_factory=dict)
    retired: dict[str, float] = field(default_factory=dict)  # key -> time swapped out
    next_key: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 2,
            "active": self.active,
            "building": self.building,
            "previous": self.previous,
            "gens": {k: g.to_json() for k, g in self.gens.items()},
            "retired": self.retired,
            "next_key": self.next_key,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Meta:
        return cls(
            active=raw.get("active"),
            building=raw.get("building"),
            previous=raw.get("previous"),
            gens={k: Generation.from_json(v) for k, v in (raw.get("gens") or {}).items()},
            retired={k: float(v) for k, v in (raw.get("retired") or {}).items()},
            next_key=int(raw.get("next_key") or 1),
        )

    @classmethod
    def load(cls, path: Path) -> Meta:
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        """Write atomically and durably (temp file, fsync, rename, fsync folder)."""
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


class Pointer:
    """``generations.json`` of one index folder, reloaded when the file changes.

    Readers call :meth:`refresh` before each read (one ``stat``); the writer
    changes the pointer through the events of :meth:`open_for_writer`'s table, each
    of which saves it.
    """

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / META_FILE
        self.meta = Meta()
        self._sig: tuple[int, int, int] | None = None

    def refresh(self, force: bool = False) -> bool:
        """Reload the pointer if it changed on disk; returns True when it did."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            changed = force or self._sig is not None
            if changed:
                self.meta, self._sig = Meta(), None
            return changed
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if not force and sig == self._sig:
            return False
        try:
            meta = Meta.load(self.path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IndexAccessError(
                f"The index pointer {self.path} is damaged ({exc}): "
                "delete the index folder and index again"
            ) from exc
        self.meta, self._sig = meta, sig
        return True

    def save(self) -> None:
        """Write the pointer (atomically) and remember its signature."""
        self.meta.save(self.path)
        st = os.stat(self.path)
        self._sig = (st.st_ino, st.st_mtime_ns, st.st_size)

    def drop_temp(self) -> None:
        """Remove the temp file a writer killed while saving left behind."""
        self.path.with_suffix(".tmp").unlink(missing_ok=True)

    @property
    def active(self) -> Generation | None:
        """The generation reads use, or None when nothing was indexed."""
        key = self.meta.active
        return self.meta.gens.get(key) if key else None

    @property
    def building(self) -> Generation | None:
        """The generation being built after a model change, or None."""
        key = self.meta.building
        return self.meta.gens.get(key) if key else None

    def find_for(self, model: ModelLike | None) -> Generation | None:
        """The live generation a writer with ``model`` fills (None: create one)."""
        meta = self.meta
        if model is None:
            key = meta.active or meta.building
            return meta.gens[key] if key else None
        for gen in meta.gens.values():
            if gen.model_id == model.model_id and gen.key in (meta.active, meta.building):
                return gen
        return None

    def open_for_writer(
        self, model: ModelLike | None, make_tables: Callable[[Generation], None]
    ) -> Generation:
        """Take the transition a writer opening with ``model`` calls for; returns the
        generation it fills. ``make_tables(gen)`` creates a new generation's tables
        before the pointer names it (a kill in between leaves tables no generation
        owns, which the next writer sweeps away).

        Every change of the states is decided here or in the events after it. The
        table (A: active, serves reads; B: building, filled beside A; P: previous,
        served before the last swap and kept for a switch back; retired: dropped at
        once when it never served, after ``RETIRED_GRACE_S`` when it did):

        ======================================  ======  ========  ========  ============
        event                                   active  building  previous  retired
        ======================================  ======  ========  ========  ============
        open: the model's generation is A       A       --        P         + B at once
        open: the model's generation is B       A       B         P
        open: the model's generation is P       P       --        A         + B at once
        open: none of the model's, no A         new     --        --
        open: none of the model's               A       new       P         + B at once
        open without a model (keyword only)     fills A, else B, else as the two above
        :meth:`complete`: B has every vector    B       --        A         + P, grace
        :meth:`serve_previous`: back to P       P       --        A         + B at once
        :meth:`forget`: retired tables gone     A       B         P or --   - those
        ======================================  ======  ========  ========  ============

        Back to P's model, P serves again at once (:meth:`restore_previous`): its
        vectors were kept. A writer whose model's GGUF moved records the new path.
        """
        self.drop_temp()
        gen = self.find_for(model)
        if gen is None and model is not None and self.restore_previous(model.model_id):
            gen = self.active
        if gen is None:
            gen = self._create(model)
            make_tables(gen)
            self._adopt(gen)
        elif model is not None and gen.model_path != str(model.path):
            gen.model_path = str(model.path)  # the file moved
            self.save()
        if model is not None and gen.key == self.meta.active:
            # The served model writes again (the default went back to it): the other
            # model's unfinished generation would never complete.
            self._abandon_building()
        return gen

    def complete(self, key: str) -> bool:
        """Serve the building generation ``key``, whose every chunk has its vector
        (the caller counted them): the served one is kept as the previous one and the
        one kept before it retires. Returns False when ``key`` is not being built."""
        meta = self.meta
        if key != meta.building:
            return False
        old = meta.active
        meta.active, meta.building = key, None
        if meta.previous is not None and meta.previous not in (old, key):
            meta.retired[meta.previous] = time.time()
        meta.previous = old
        self.save()
        log.info("The index now serves %s", meta.gens[key].model_name)
        return True

    @property
    def previous(self) -> Generation | None:
        """The generation that served before the last swap (kept), or None."""
        key = self.meta.previous
        return self.meta.gens.get(key) if key else None

    def serve_previous(self, model_path: str | Path) -> bool:
        """Serve the previous generation again when its vectors are those of the GGUF
        at ``model_path`` (the caller holds the writer lock); returns True when it did
        (see :meth:`restore_previous`)."""
        kept = self.previous
        if kept is None or kept.model_path is None:
            return False
        if Path(kept.model_path).resolve() != Path(model_path).resolve():
            return False
        return self.restore_previous(kept.model_id)

    def restore_previous(self, model_id: str) -> bool:
        """Serve the previous generation again when it holds ``model_id``'s vectors:
        it and the served one trade places, and a generation being built is dropped.
        Returns True when it did. Its files are brought up to date by the next
        indexing run, as after any time the index was not watched."""
        meta = self.meta
        prev = self.previous
        if prev is None or prev.model_id != model_id or prev.key == meta.active:
            return False
        if meta.building is not None:
            meta.retired[meta.building] = 0.0  # never served: drop at once
            meta.building = None
        meta.active, meta.previous = prev.key, meta.active
        self.save()
        log.info("The index serves %s again", prev.model_name or prev.model_id)
        return True

    def _create(self, model: ModelLike | None) -> Generation:
        """A new generation for ``model`` (not saved: :meth:`_adopt` it once its
        tables exist)."""
        key = f"g{self.meta.next_key}"
        if model is None:
            return Generation(key, KEYWORD_MODEL, created=time.time())
        return Generation(
            key,
            model.model_id,
            model_name=model.name,
            model_path=str(model.path),
            dim=int(model.dim),
            created=time.time(),
        )

    def _adopt(self, gen: Generation) -> None:
        """Record ``gen``: it serves when nothing does, else it is built beside the
        served one (replacing an unfinished one, which is dropped at once)."""
        meta = self.meta
        meta.next_key += 1
        meta.gens[gen.key] = gen
        if meta.active is None:
            meta.active = gen.key
        else:
            if meta.building is not None:
                meta.retired[meta.building] = 0.0  # never served: drop at once
            meta.building = gen.key
            log.info(
                "Building a new index for %s; the current one serves meanwhile",
                gen.model_name or gen.model_id,
            )
        self.save()

    def _abandon_building(self) -> None:
        """Give up the generation being built, if any: it never served, so it is
        retired to be dropped at once."""
        meta = self.meta
        if meta.building is None:
            return
        gen = meta.gens.get(meta.building)
        log.info("Dropping the unfinished index of %s", gen.model_id if gen else meta.building)
        meta.retired[meta.building] = 0.0
        meta.building = None
        self.save()

    def due_for_drop(self, now: float | None = None) -> list[Generation]:
        """Retired generations whose grace time is over (removed from the pointer
        by :meth:`forget`)."""
        now = time.time() if now is None else now
        meta = self.meta
        due = []
        for key, when in meta.retired.items():
            if when and now - when < RETIRED_GRACE_S:
                continue
            gen = meta.gens.get(key)
            due.append(gen if gen is not None else Generation(key, KEYWORD_MODEL))
        return due

    def forget(self, keys: list[str]) -> None:
        """Remove retired generations from the pointer (their tables are gone)."""
        for key in keys:
            self.meta.gens.pop(key, None)
            self.meta.retired.pop(key, None)
            if self.meta.previous == key:
                self.meta.previous = None
        if keys:
            self.save()

    def live_tables(self) -> set[str]:
        """Names of every table a generation in the pointer owns."""
        names: set[str] = set()
        for gen in self.meta.gens.values():
            names.update(gen.table_names())
        return names
