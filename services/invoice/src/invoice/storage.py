"""Where rendered PDFs are kept: an S3-compatible bucket, or a local directory.

boto3 blocks, so every call runs in a worker thread. Objects are written once under a key
that names the invoice's version (see pdf.py) and never changed, so an object's ETag is a
stable validator for HTTP caching.
"""

import asyncio
import hashlib
import os
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from invoice.config import InvoiceSettings

CHUNK_BYTES = 64 * 1024
PDF_CONTENT_TYPE = "application/pdf"


@dataclass(frozen=True)
class PdfObject:
    """A stored PDF; `etag` is quoted, as S3 and HTTP write it."""

    key: str
    etag: str
    size: int


class PdfStore(Protocol):
    bucket: str

    async def head(self, key: str) -> PdfObject | None: ...

    async def put(self, key: str, data: bytes) -> PdfObject: ...

    async def read(self, key: str) -> tuple[PdfObject, AsyncIterator[bytes]] | None: ...


class S3PdfStore:
    """A bucket of S3 (or of moto, MinIO...) through boto3."""

    def __init__(self, bucket: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        # boto3 reads AWS_ENDPOINT_URL itself when no endpoint is given.
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=3,
                read_timeout=10,
                max_pool_connections=20,
            ),
        )

    def _missing(self, error: Exception) -> bool:
        code = getattr(error, "response", {}).get("Error", {}).get("Code")
        return code in ("404", "NoSuchKey", "NotFound")

    async def head(self, key: str) -> PdfObject | None:
        from botocore.exceptions import ClientError

        try:
            answer = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as error:
            if self._missing(error):
                return None
            raise
        return PdfObject(key, answer["ETag"], int(answer["ContentLength"]))

    async def put(self, key: str, data: bytes) -> PdfObject:
        answer = await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=PDF_CONTENT_TYPE,
        )
        return PdfObject(key, answer["ETag"], len(data))

    async def read(self, key: str) -> tuple[PdfObject, AsyncIterator[bytes]] | None:
        from botocore.exceptions import ClientError

        try:
            answer = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as error:
            if self._missing(error):
                return None
            raise
        body = answer["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                    yield chunk
            finally:
                body.close()

        return PdfObject(key, answer["ETag"], int(answer["ContentLength"])), chunks()


class DirectoryPdfStore:
    """Files under a directory, for a set-up without any object storage. The ETag is the
    file's MD5, as S3 computes it for a single-part upload."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bucket = root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError("the key leaves the store's directory")
        return path

    @staticmethod
    def _object(key: str, data: bytes) -> PdfObject:
        return PdfObject(
            key, f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"', len(data)
        )

    async def head(self, key: str) -> PdfObject | None:
        found = await self.read(key)
        return found[0] if found else None

    async def put(self, key: str, data: bytes) -> PdfObject:
        path = self._path(key)

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written aside and renamed: a reader sees the whole file or none.
            descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
            os.replace(temporary, path)

        await asyncio.to_thread(write)
        return self._object(key, data)

    async def read(self, key: str) -> tuple[PdfObject, AsyncIterator[bytes]] | None:
        path = self._path(key)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        return self._object(key, data), _chunked(data)


def pdf_store(settings: InvoiceSettings) -> PdfStore:
    store: PdfStore
    if settings.pdf_store.startswith("file://"):
        store = DirectoryPdfStore(Path(urlparse(settings.pdf_store).path))
    elif settings.pdf_store == "s3":
        store = S3PdfStore(settings.pdf_bucket, settings.s3_endpoint_url)
    else:
        raise ValueError("INVOICE_PDF_STORE is `s3` or a file:// directory")
    if settings.pdf_memory_cache_bytes <= 0:
        return store
    return CachedPdfStore(store, settings.pdf_memory_cache_bytes)


class CachedPdfStore:
    """A store with the PDFs it has seen kept in memory, least recently used out first.

    Correct without any invalidation because an object is never rewritten: its key names the
    version it shows (pdf.py). A cached download then costs no storage round trip at all.
    Only objects up to `max_object_bytes` are kept, `max_bytes` in all.
    """

    def __init__(self, store: PdfStore, max_bytes: int, max_object_bytes: int = 1 << 20) -> None:
        self.store = store
        self.bucket = store.bucket
        self.max_bytes = max_bytes
        self.max_object_bytes = max_object_bytes
        self._kept: OrderedDict[str, tuple[PdfObject, bytes]] = OrderedDict()
        self._size = 0

    def _remember(self, stored: PdfObject, data: bytes) -> None:
        if len(data) > self.max_object_bytes or len(data) > self.max_bytes:
            return
        if stored.key in self._kept:
            return
        self._kept[stored.key] = (stored, data)
        self._size += len(data)
        while self._size > self.max_bytes:
            _, (_, dropped) = self._kept.popitem(last=False)
            self._size -= len(dropped)

    def _recall(self, key: str) -> tuple[PdfObject, bytes] | None:
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found

    async def head(self, key: str) -> PdfObject | None:
        found = self._recall(key)
        return found[0] if found else await self.store.head(key)

    async def put(self, key: str, data: bytes) -> PdfObject:
        stored = await self.store.put(key, data)
        self._remember(stored, data)
        return stored

    async def read(self, key: str) -> tuple[PdfObject, AsyncIterator[bytes]] | None:
        found = self._recall(key)
        if found is None:
            answer = await self.store.read(key)
            if answer is None:
                return None
            stored, chunks = answer
            if stored.size > self.max_object_bytes:
                return stored, chunks
            data = b"".join([chunk async for chunk in chunks])
            self._remember(stored, data)
            found = (stored, data)
        stored, data = found
        return stored, _chunked(data)


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]
