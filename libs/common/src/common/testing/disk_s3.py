"""A small S3 server that keeps its objects on disk and honours conditional writes.

The drill's broker (the dev broker on its S3 engine) numbers each partition's records with a
compare-and-swap: it reads the partition's `watermark.json` with its ETag, writes it back
with `If-Match: <etag>` and then writes the batch with `If-None-Match: *`, and when the store
answers 412 it reads again and retries. A store that ignores those headers lets two producers
writing to one partition at once both win: both take the same offset, the second batch
overwrites the first, and records the broker acknowledged are gone (four producers of 500
acknowledged records each ended with 857 distinct offsets over npm's s3rver 3.7.1, which
ignores both headers). Apache Kafka never has this problem; the dev broker over S3 has it
unless its store does what S3 does since 2024: refuse a write whose precondition fails.

This server does, and nothing more than the drill needs of S3: buckets made at start or by
`PUT /bucket`; objects put, read (whole or one range), headed and deleted, with
`If-Match`/`If-None-Match` on writes and reads; `ListObjectsV2` with prefix, delimiter and
continuation; `DeleteObjects`. Objects live in one SQLite database in WAL mode: a write is
one transaction, so an object is either wholly there with its ETag or not at all, and a
process killed at any moment loses no write it answered (the drill kills processes, not the
machine; `--fsync` makes each commit reach the disk too). Requests are not authenticated: it
listens on loopback for the drill, and any access key is accepted.

    python -m common.testing.disk_s3 --directory DIR --port PORT --bucket tansu --bucket pdfs
"""

import argparse
import hashlib
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape, unescape

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_KEYS = 1000
SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    body BLOB NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    modified REAL NOT NULL,
    PRIMARY KEY (bucket, key)
);
"""


class S3Error(Exception):
    """An S3 error answer: its HTTP status, S3 code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Store:
    """Buckets and objects in one SQLite file.

    Every call runs to its end without yielding to the event loop, so a conditional write's
    check and its write are one step no other request can come between (and one SQLite
    transaction, which a killed process either committed or did not)."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self.db.executescript(SCHEMA)

    def make_bucket(self, name: str) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO buckets (name, created) VALUES (?, ?)", (name, time.time())
        )

    def require_bucket(self, name: str) -> None:
        if self.db.execute("SELECT 1 FROM buckets WHERE name = ?", (name,)).fetchone() is None:
            raise S3Error(404, "NoSuchBucket", f"The bucket {name} does not exist")

    def head(self, bucket: str, key: str) -> tuple[str, str, str, float, int] | None:
        """(etag, content type, metadata, modified, size) of an object, or None."""
        row = self.db.execute(
            "SELECT etag, content_type, metadata, modified, length(body) FROM objects"
            " WHERE bucket = ? AND key = ?",
            (bucket, key),
        ).fetchone()
        return tuple(row) if row else None

    def body(self, bucket: str, key: str) -> bytes:
        row = self.db.execute(
            "SELECT body FROM objects WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
        return bytes(row[0]) if row else b""

    def put(
        self,
        bucket: str,
        key: str,
        body: bytes,
        content_type: str,
        metadata: str,
        if_match: str | None,
        if_none_match: str | None,
    ) -> str:
        """Store the object when its preconditions hold; its ETag."""
        self.require_bucket(bucket)
        current = self.head(bucket, key)
        current_etag = current[0] if current else None
        if if_none_match is not None and etag_matches(if_none_match, current_etag):
            raise S3Error(412, "PreconditionFailed", "The object exists")
        if if_match is not None and not etag_matches(if_match, current_etag):
            raise S3Error(412, "PreconditionFailed", "The object's ETag is not the one given")
        etag = f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
        self.db.execute(
            "INSERT OR REPLACE INTO objects"
            " (bucket, key, body, etag, content_type, metadata, modified)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (bucket, key, body, etag, content_type, metadata, time.time()),
        )
        return etag

    def delete(self, bucket: str, key: str) -> None:
        self.db.execute("DELETE FROM objects WHERE bucket = ? AND key = ?", (bucket, key))

    def list(
        self, bucket: str, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> tuple[list[tuple[str, int, str, float]], list[str], str | None]:
        """One page of ListObjectsV2: (objects, common prefixes, the last key listed when
        more follow)."""
        self.require_bucket(bucket)
        rows = self.db.execute(
            "SELECT key, length(body), etag, modified FROM objects"
            " WHERE bucket = ? AND key > ? AND substr(key, 1, ?) = ? ORDER BY key",
            (bucket, after, len(prefix), prefix),
        )
        contents: list[tuple[str, int, str, float]] = []
        prefixes: list[str] = []
        for key, size, etag, modified in rows:
            if len(contents) + len(prefixes) == max_keys:
                return contents, prefixes, last_listed(contents, prefixes)
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
                if not prefixes or prefixes[-1] != common:
                    prefixes.append(common)
                continue
            contents.append((key, size, etag, modified))
        return contents, prefixes, None


def last_listed(contents: list[tuple[str, int, str, float]], prefixes: list[str]) -> str:
    """Where the next page starts: after the greatest key or common prefix listed. A common
    prefix is followed by everything it covers (keys below it sort before `prefix + max`)."""
    last_key = contents[-1][0] if contents else ""
    last_prefix = prefixes[-1] + "\U0010ffff" if prefixes else ""
    return max(last_key, last_prefix)


def etag_matches(condition: str, etag: str | None) -> bool:
    """Whether an If-Match/If-None-Match value names this ETag (`*` names any object)."""
    if etag is None:
        return False
    wanted = {part.strip() for part in condition.split(",")}
    return "*" in wanted or etag in wanted or etag.strip('"') in wanted


def http_date(timestamp: float) -> str:
    return formatdate(timestamp, usegmt=True)


def iso_date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def decode_aws_chunked(body: bytes) -> bytes:
    """The payload of botocore's `aws-chunked` framing: `size;ext\\r\\ndata\\r\\n` chunks,
    a zero-size one, then trailers (a checksum we do not need)."""
    payload = bytearray()
    position = 0
    while True:
        line_end = body.index(b"\r\n", position)
        size = int(body[position:line_end].split(b";")[0], 16)
        if size == 0:
            return bytes(payload)
        start = line_end + 2
        payload += body[start : start + size]
        position = start + size + 2


RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
# The keys of a DeleteObjects body (`<Delete><Object><Key>k</Key></Object>...`).
DELETE_KEY = re.compile(r"<Key>(.*?)</Key>", re.DOTALL)


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The first and last byte a single `Range: bytes=a-b` asks for, or None for the whole."""
    found = RANGE.match(header.strip())
    if not found or not (found[1] or found[2]):
        return None
    if found[1]:
        first = int(found[1])
        last = min(int(found[2]), size - 1) if found[2] else size - 1
    else:
        first, last = max(size - int(found[2]), 0), size - 1
    if first > last or first >= size:
        raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
    return first, last


class DiskS3:
    """The ASGI application."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = unquote(raw_path.decode("latin-1"))
        bucket, _, key = path.lstrip("/").partition("/")
        query = {
            name: values[0]
            for name, values in parse_qs(
                scope["query_string"].decode(), keep_blank_values=True
            ).items()
        }
        try:
            status, answer_headers, answer = self.answer(
                scope["method"], bucket, key, query, headers, bytes(body)
            )
        except S3Error as error:
            status, answer_headers = error.status, {"content-type": "application/xml"}
            answer = (
                "<?xml version='1.0' encoding='UTF-8'?>"
                f"<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
                f"<Resource>{escape(path)}</Resource><RequestId>0</RequestId></Error>"
            ).encode()
            if scope["method"] == "HEAD":
                answer = b""
        length = answer_headers.pop("content-length", None) or str(len(answer))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-length", length.encode()),
                    *((k.encode(), v.encode("latin-1")) for k, v in answer_headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def answer(
        self,
        method: str,
        bucket: str,
        key: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        if not bucket:
            raise S3Error(501, "NotImplemented", "Listing buckets is not served here")
        if not key:
            return self.bucket_request(method, bucket, query, body)
        if method in ("GET", "HEAD"):
            return self.get_object(method, bucket, key, headers)
        if method == "PUT" and "x-amz-copy-source" not in headers and not query:
            if "aws-chunked" in headers.get("content-encoding", ""):
                body = decode_aws_chunked(body)
            metadata = "\n".join(
                f"{name}:{value}"
                for name, value in headers.items()
                if name.startswith("x-amz-meta-")
            )
            etag = self.store.put(
                bucket,
                key,
                body,
                headers.get("content-type", "binary/octet-stream"),
                metadata,
                headers.get("if-match"),
                headers.get("if-none-match"),
            )
            return 200, {"etag": etag}, b""
        if method == "DELETE" and not query:
            self.store.delete(bucket, key)
            return 204, {}, b""
        raise S3Error(501, "NotImplemented", f"{method} {'?'.join(query)} is not served here")

    def bucket_request(
        self, method: str, bucket: str, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT" and not query:
            self.store.make_bucket(bucket)
            return 200, {"location": f"/{bucket}"}, b""
        if method == "HEAD":
            self.store.require_bucket(bucket)
            return 200, {}, b""
        if method == "GET" and query.get("list-type") == "2":
            return self.list_objects(bucket, query)
        if method == "POST" and "delete" in query:
            return self.delete_objects(bucket, body)
        raise S3Error(501, "NotImplemented", f"{method} on a bucket is not served here")

    def get_object(
        self, method: str, bucket: str, key: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        self.store.require_bucket(bucket)
        found = self.store.head(bucket, key)
        if found is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        etag, content_type, metadata, modified, size = found
        if "if-match" in headers and not etag_matches(headers["if-match"], etag):
            raise S3Error(412, "PreconditionFailed", "The object's ETag is not the one given")
        answer_headers = {
            "etag": etag,
            "content-type": content_type,
            "last-modified": http_date(modified),
            "accept-ranges": "bytes",
        }
        for line in filter(None, metadata.split("\n")):
            name, _, value = line.partition(":")
            answer_headers[name] = value
        if "if-none-match" in headers and etag_matches(headers["if-none-match"], etag):
            return 304, answer_headers, b""
        wanted = byte_range(headers["range"], size) if "range" in headers else None
        if method == "HEAD":
            return 200, {**answer_headers, "content-length": str(size)}, b""
        data = self.store.body(bucket, key)
        if wanted is None:
            return 200, answer_headers, data
        first, last = wanted
        answer_headers["content-range"] = f"bytes {first}-{last}/{size}"
        return 206, answer_headers, data[first : last + 1]

    def list_objects(self, bucket: str, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        after = max(query.get("continuation-token", ""), query.get("start-after", ""))
        max_keys = min(int(query.get("max-keys") or MAX_KEYS), MAX_KEYS)
        contents, prefixes, next_after = self.store.list(bucket, prefix, delimiter, after, max_keys)
        parts = [
            f"<?xml version='1.0' encoding='UTF-8'?><ListBucketResult xmlns='{S3_NAMESPACE}'>",
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>",
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>{max_keys}</MaxKeys>",
            f"<IsTruncated>{'true' if next_after is not None else 'false'}</IsTruncated>",
        ]
        if delimiter:
            parts.append(f"<Delimiter>{escape(delimiter)}</Delimiter>")
        if "continuation-token" in query:
            parts.append(
                f"<ContinuationToken>{escape(query['continuation-token'])}</ContinuationToken>"
            )
        if next_after is not None:
            parts.append(f"<NextContinuationToken>{escape(next_after)}</NextContinuationToken>")
        for key, size, etag, modified in contents:
            parts.append(
                f"<Contents><Key>{escape(key)}</Key><LastModified>{iso_date(modified)}</LastModified>"
                f"<ETag>{escape(etag)}</ETag><Size>{size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        for common in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{escape(common)}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        return 200, {"content-type": "application/xml"}, "".join(parts).encode()

    def delete_objects(self, bucket: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.store.require_bucket(bucket)
        keys = [unescape(key) for key in DELETE_KEY.findall(body.decode())]
        for key in keys:
            self.store.delete(bucket, key)
        deleted = "".join(f"<Deleted><Key>{escape(key)}</Key></Deleted>" for key in keys)
        document = (
            f"<?xml version='1.0' encoding='UTF-8'?>"
            f"<DeleteResult xmlns='{S3_NAMESPACE}'>{deleted}</DeleteResult>"
        )
        return 200, {"content-type": "application/xml"}, document.encode()


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--directory", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--bucket", action="append", default=[], help="a bucket to make at start")
    parser.add_argument("--fsync", action="store_true", help="each write reaches the disk")
    arguments = parser.parse_args()
    arguments.directory.mkdir(parents=True, exist_ok=True)
    store = Store(arguments.directory / "objects.sqlite3", fsync=arguments.fsync)
    for bucket in arguments.bucket:
        store.make_bucket(bucket)
    uvicorn.run(
        DiskS3(store),
        host=arguments.host,
        port=arguments.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
