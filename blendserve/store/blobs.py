"""File bytes on local disk. Writes go to a temp name and are renamed, so a crash never leaves half a blob."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id

    def open_writer(self, blob_id: str) -> BlobWriter:
        return BlobWriter(self.path(blob_id))

    def open(self, blob_id: str) -> BinaryIO:
        return open(self.path(blob_id), "rb")

    def iter_chunks(self, blob_id: str) -> Iterator[bytes]:
        with self.open(blob_id) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def delete(self, blob_id: str) -> None:
        self.path(blob_id).unlink(missing_ok=True)

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()


class BlobWriter:
    """Appends bytes to `<name>.part`; commit() fsyncs and renames; abort() removes."""

    def __init__(self, final: Path) -> None:
        self.final = final
        self.tmp = final.with_name(final.name + ".part")
        self._fh = open(self.tmp, "wb")  # noqa: SIM115 - closed by commit()/abort()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.size += len(data)

    def commit(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.tmp, self.final)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is not None or not self._fh.closed:
            self.abort()
