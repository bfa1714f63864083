"""The software catalog: products and their releases, as the releases folder describes them.

The policy keeps the current version of every software product, with its updates, in the secured partner area.
A releases folder (`FLEETWATCH_RELEASES_DIR`, demo: `examples/releases/`) holds `catalog.yaml` and the files::

    products:                       # optional: names and blurbs of the products
      fleetwatch-agent:
        name: Fleetwatch Agent
        description: The probe agent ...
    releases:
      - product: fleetwatch-agent
        version: 2.4.1
        date: 2026-10-20
        notes: |                    # Markdown (or notes_file: a Markdown file in the folder)
          * Fixes ...
        file: fleetwatch-agent-2.4.1.tar.gz   # a bare file name (or path: sub/folder/name, inside the folder)
        sha256: 3a7b...             # 64 hex digits
        size: 1234                  # bytes

Loading checks every file against its catalog entry (SHA-256 and size) once: a missing file or a mismatch
marks the release unavailable (listed, with the reason, but never served). A malformed catalog is a
`ReleaseCatalogError` that names the entry. Files are located only through the catalog, so nothing a client
sends ever becomes a path. No Kafka or aiohttp here; `load_catalog` is the only IO.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fleetcore.errors import ConfigError
from schemas.inventory import ID_PATTERN

Day = date
"""A release date (an alias: `Release.date` shadows the type inside the class)."""

CATALOG_FILE = "catalog.yaml"
FILE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$"
"""A release file's name: no separators, no leading dot (so never `..`)."""
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
_CHUNK = 1 << 20


class ReleaseCatalogError(ConfigError):
    """The catalog cannot be read or does not describe valid releases (the message names the entry)."""


class ProductEntry(BaseModel):
    """A product's name and blurb, as the catalog gives them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=4000)


class ReleaseEntry(BaseModel):
    """One release as written in the catalog (before its file is checked)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    product: str = Field(pattern=ID_PATTERN)
    version: str = Field(pattern=VERSION_PATTERN)
    date: date
    notes: str = Field(default="", max_length=100_000)
    """Release notes in Markdown."""
    notes_file: str | None = None
    """A Markdown file in the releases folder holding the notes (instead of `notes`)."""
    file: str = Field(pattern=FILE_PATTERN)
    """The name the file is served (and saved) under."""
    path: str | None = None
    """Where the file lies, relative to the releases folder (default: `file` at its top)."""
    sha256: str
    size: int = Field(ge=0)
    content_type: str | None = Field(default=None, pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")
    """The Content-Type to serve (default: from the file name)."""

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("sha256 must be 64 hex digits")
        return value

    @model_validator(mode="after")
    def _one_notes(self) -> ReleaseEntry:
        if self.notes and self.notes_file:
            raise ValueError("give notes or notes_file, not both")
        return self


class CatalogFile(BaseModel):
    """The whole `catalog.yaml`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    products: dict[str, ProductEntry] = Field(default_factory=dict)
    releases: list[ReleaseEntry] = Field(default_factory=list)

    @field_validator("products", mode="before")
    @classmethod
    def _no_null_products(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {key: body or {} for key, body in value.items()}
        return value


@dataclass(frozen=True)
class Release:
    """One release with what loading found out about its file."""

    product: str
    version: str
    date: date
    notes: str
    file: str
    sha256: str
    size: int
    path: Path
    """Absolute path of the file (inside the releases folder)."""
    content_type: str | None = None
    problem: str | None = None
    """Why the release cannot be served (missing file, size or SHA-256 mismatch); None when it can."""
    mtime_ns: int | None = None
    """Modification time of the file when it was verified: a file changed since is not served."""

    @property
    def available(self) -> bool:
        return self.problem is None

    def sort_key(self) -> tuple[Day, tuple[tuple[int, str], ...]]:
        """Newest last: by date, then by version (numeric parts compared as numbers)."""
        return self.date, version_key(self.version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts (no server path)."""
        return {
            "product": self.product,
            "version": self.version,
            "date": self.date.isoformat(),
            "notes": self.notes,
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "available": self.available,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class Product:
    """A product and its releases, newest first."""

    product: str
    name: str
    description: str
    releases: tuple[Release, ...]

    @property
    def current(self) -> str | None:
        """The newest version with a file that can be served."""
        return next((r.version for r in self.releases if r.available), None)

    def versions(self) -> list[tuple[str, list[Release]]]:
        """Each version with its files, newest first."""
        grouped: dict[str, list[Release]] = {}
        for release in self.releases:
            grouped.setdefault(release.version, []).append(release)
        return list(grouped.items())


@dataclass(frozen=True)
class Catalog:
    """Every product of the releases folder (empty when none is configured)."""

    products: dict[str, Product] = field(default_factory=dict)

    def product(self, product: str) -> Product | None:
        return self.products.get(product)

    def release(self, product: str, version: str) -> list[Release]:
        """The files of one release (a release may ship several)."""
        found = self.products.get(product)
        return [r for r in found.releases if r.version == version] if found else []

    def find(self, product: str, version: str, file: str) -> Release | None:
        """The release file a download URL names, or None (whatever the client sent)."""
        return next((r for r in self.release(product, version) if r.file == file), None)


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a version: "2.10.0" after "2.9.1"; text parts compare as text, after numbers."""
    return tuple(
        (int(part), "") if part.isdigit() else (1 << 62, part) for part in re.split(r"[.+_-]", version)
    )


def file_digest(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size in bytes) of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def parse_catalog(data: Any, source: str = CATALOG_FILE) -> CatalogFile:
    """The catalog's entries from its parsed YAML; `ReleaseCatalogError` naming the bad entry."""
    if data is None:
        return CatalogFile()
    if not isinstance(data, Mapping):
        raise ReleaseCatalogError(f"{source}: the catalog must be a mapping with products and releases")
    try:
        catalog = CatalogFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ReleaseCatalogError(f"{source}: {where}: {error['msg']}") from exc
    seen: set[tuple[str, str, str]] = set()
    for index, entry in enumerate(catalog.releases):
        identity = (entry.product, entry.version, entry.file)
        if identity in seen:
            raise ReleaseCatalogError(
                f"{source}: releases.{index}: {entry.product} {entry.version} lists {entry.file} twice"
            )
        seen.add(identity)
    return catalog


def build_catalog(catalog: CatalogFile, folder: Path) -> Catalog:
    """Check every release's file in `folder` and group the releases by product (newest first)."""
    root = folder.resolve()
    releases: dict[str, list[Release]] = {}
    for index, entry in enumerate(catalog.releases):
        path = _inside(root, entry.path or entry.file, f"releases.{index}.path")
        notes = entry.notes
        if entry.notes_file:
            notes_path = _inside(root, entry.notes_file, f"releases.{index}.notes_file")
            try:
                notes = notes_path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ReleaseCatalogError(
                    f"releases.{index}: cannot read notes {entry.notes_file}: {exc}"
                ) from exc
        problem, mtime_ns = check_file(path, entry.sha256, entry.size)
        release = Release(
            product=entry.product,
            version=entry.version,
            date=entry.date,
            notes=notes,
            file=entry.file,
            sha256=entry.sha256,
            size=entry.size,
            path=path,
            content_type=entry.content_type,
            problem=problem,
            mtime_ns=mtime_ns,
        )
        releases.setdefault(entry.product, []).append(release)
    names = set(catalog.products) | set(releases)
    return Catalog(
        products={
            product: _product(product, catalog.products.get(product), releases.get(product, []))
            for product in sorted(names)
        }
    )


def check_file(path: Path, sha256: str, size: int) -> tuple[str | None, int | None]:
    """(why the file at `path` does not match the catalog or None when it does, its mtime in ns)."""
    try:
        before = path.stat().st_mtime_ns if path.is_file() else None
        if before is None:
            return "file missing", None
        actual, actual_size = file_digest(path)
        after = path.stat().st_mtime_ns
    except OSError as exc:
        return f"file unreadable: {exc.strerror or exc}", None
    if actual_size != size:
        return f"size mismatch: catalog says {size} bytes, the file has {actual_size}", None
    if actual != sha256:
        return f"SHA-256 mismatch: catalog says {sha256[:12]}…, the file is {actual[:12]}…", None
    if after != before:
        return "file changed while it was checked", None
    return None, after


def unchanged(release: Release) -> bool:
    """Whether the release's file is still the one that was verified (same size and modification time)."""
    try:
        stat = release.path.stat()
    except OSError:
        return False
    return release.available and stat.st_size == release.size and stat.st_mtime_ns == release.mtime_ns


def load_catalog(folder: Path | None) -> Catalog:
    """The catalog of a releases folder (its `catalog.yaml`, files checked); empty when none is configured."""
    if folder is None:
        return Catalog()
    source = Path(folder) / CATALOG_FILE
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ReleaseCatalogError(f"cannot read the release catalog {source}: {exc}") from exc
    return build_catalog(parse_catalog(data, str(source)), Path(folder))


def _inside(root: Path, relative: str, where: str) -> Path:
    candidate = Path(relative)
    if candidate.is_absolute():
        raise ReleaseCatalogError(f"{where}: {relative} must be relative to the releases folder")
    resolved = (root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise ReleaseCatalogError(f"{where}: {relative} lies outside the releases folder")
    return resolved


def _product(product: str, entry: ProductEntry | None, releases: Iterable[Release]) -> Product:
    entry = entry or ProductEntry()
    return Product(
        product=product,
        name=entry.name or product,
        description=entry.description,
        releases=tuple(sorted(releases, key=Release.sort_key, reverse=True)),
    )
