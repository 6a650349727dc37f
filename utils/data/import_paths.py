"""Where a server-side file import may read from: paths under the IMPORT_ROOTS directories, or
``s3://`` objects under an allowed bucket prefix. Nothing else.

A client names a file (``ImportFile``); the server opens it with its own permissions, so the name
is checked here first: a local path is resolved (symbolic links and ``..`` followed) and must end
up inside one of the roots (also resolved); an ``s3://bucket/key`` URI must fall under an allowed
``s3://bucket/prefix`` (an ``IMPORT_ROOTS`` entry, or the parquet store's own ``MARKET_DATA_URI``
bucket) and may not carry its own query options: the endpoint and credentials are the root's,
never the caller's. Any other scheme is refused.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pyarrow.fs as pafs


class ImportPathDenied(PermissionError):
    """The path is well formed but outside every import root."""


class InvalidImportPath(ValueError):
    """The path or URI cannot name an importable file (empty, unknown scheme, query options...)."""


@dataclass(frozen=True)
class ImportRoots:
    """Local directories (resolved) and allowed ``s3://`` prefixes, each with its full URI."""

    local: tuple[Path, ...]
    s3: tuple[tuple[str, str], ...]  # (bucket/prefix without slashes at the ends, root URI with options)

    @classmethod
    def from_settings(cls, settings) -> "ImportRoots":
        entries = [e.strip() for e in (settings.import_roots or "").split(",") if e.strip()]
        if not entries:
            entries = [str(settings.data_dir / "imports")]
        market = getattr(settings, "market_data_uri", "") or ""
        if market.startswith("s3://"):  # the store's own bucket (its endpoint options come along)
            entries.append(_bucket_uri(market))
        return cls.parse(entries)

    @classmethod
    def parse(cls, entries: list[str]) -> "ImportRoots":
        local, s3 = [], []
        for entry in entries:
            if entry.startswith("s3://"):
                parts = urlsplit(entry)
                s3.append((f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/"), entry))
            else:
                local.append(Path(os.path.realpath(entry)))
        return cls(tuple(local), tuple(s3))

    def describe(self) -> str:
        return ", ".join([str(p) for p in self.local] + [f"s3://{prefix}" for prefix, _ in self.s3])


def _bucket_uri(uri: str) -> str:
    """``s3://bucket/any/prefix?options`` -> ``s3://bucket?options`` (the whole bucket)."""
    parts = urlsplit(uri)
    return f"s3://{parts.netloc}" + (f"?{parts.query}" if parts.query else "")


def resolve_import_path(requested: str, roots: ImportRoots) -> tuple[pafs.FileSystem, str]:
    """The filesystem and path to open for ``requested``; raises InvalidImportPath or
    ImportPathDenied with a message naming the allowed roots."""
    text = (requested or "").strip()
    if not text:
        raise InvalidImportPath("is empty; name a CSV or Parquet file under an import root "
                                f"({roots.describe()})")
    if "\x00" in text:
        raise InvalidImportPath("contains a NUL character")
    if text.startswith("s3://"):
        return _resolve_s3(text, roots)
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise InvalidImportPath(f"{requested!r}: only local paths and s3:// URIs can be imported")
    candidate = Path(text)
    if not candidate.is_absolute():  # relative names are relative to the first local root
        if not roots.local:
            raise ImportPathDenied(f"{requested!r}: no local import root is configured (IMPORT_ROOTS)")
        candidate = roots.local[0] / candidate
    resolved = Path(os.path.realpath(candidate))
    if not any(resolved.is_relative_to(root) for root in roots.local):
        raise ImportPathDenied(f"{requested!r} is outside the import roots ({roots.describe()}); put the file "
                               f"there or add its directory to IMPORT_ROOTS")
    return pafs.LocalFileSystem(), str(resolved)


def _resolve_s3(text: str, roots: ImportRoots) -> tuple[pafs.FileSystem, str]:
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise InvalidImportPath(f"{text!r}: an s3:// URI to import may not carry options (?...); the endpoint and "
                                f"credentials are the server's")
    segments = [s for s in parts.path.split("/") if s]
    if not parts.netloc or not segments:
        raise InvalidImportPath(f"{text!r}: name an object, s3://bucket/key")
    if any(s in (".", "..") for s in segments):
        raise InvalidImportPath(f"{text!r}: '.' and '..' are not allowed in an s3:// key")
    key = str(PurePosixPath(parts.netloc, *segments))
    for prefix, root_uri in roots.s3:
        if key == prefix or key.startswith(prefix + "/"):
            filesystem, _ = pafs.FileSystem.from_uri(root_uri)
            return filesystem, key
    raise ImportPathDenied(f"{text!r} is outside the import roots ({roots.describe()}); add its bucket/prefix to "
                           f"IMPORT_ROOTS")
