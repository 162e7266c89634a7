"""The drill's disk S3 server speaks the S3 that boto3 and the broker's S3 engine use, refuses
a write whose precondition fails, and keeps what it answered across a SIGKILL."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest

from common.testing.disk_s3 import decode_aws_chunked
from common.testing.durable import S3_KEY, DiskS3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DiskS3]:
    s3 = DiskS3(tmp_path / "s3", ["drill"])
    s3.start()
    try:
        yield s3
    finally:
        s3.stop()


def client_of(server: DiskS3) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
    )


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response["Error"]["Code"])


def test_an_object_is_put_read_headed_and_deleted(server: DiskS3) -> None:
    s3 = client_of(server)
    put = s3.put_object(
        Bucket="drill",
        Key="invoices/a b/1.pdf",
        Body=b"%PDF-1.7 one",
        ContentType="application/pdf",
        Metadata={"owner": "42"},
    )

    got = s3.get_object(Bucket="drill", Key="invoices/a b/1.pdf")
    assert got["Body"].read() == b"%PDF-1.7 one"
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "application/pdf"
    assert got["Metadata"] == {"owner": "42"}
    assert s3.head_object(Bucket="drill", Key="invoices/a b/1.pdf")["ContentLength"] == 12
    part = s3.get_object(Bucket="drill", Key="invoices/a b/1.pdf", Range="bytes=5-7")
    assert part["Body"].read() == b"1.7"

    s3.delete_object(Bucket="drill", Key="invoices/a b/1.pdf")
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        s3.get_object(Bucket="drill", Key="invoices/a b/1.pdf")
    assert error_code(missing.value) == "NoSuchKey"


def test_a_write_whose_precondition_fails_is_refused_and_changes_nothing(server: DiskS3) -> None:
    s3 = client_of(server)
    first = s3.put_object(Bucket="drill", Key="watermark.json", Body=b'{"high":1}', IfNoneMatch="*")

    with pytest.raises(botocore.exceptions.ClientError) as exists:
        s3.put_object(Bucket="drill", Key="watermark.json", Body=b'{"high":9}', IfNoneMatch="*")
    assert error_code(exists.value) == "PreconditionFailed"

    second = s3.put_object(
        Bucket="drill", Key="watermark.json", Body=b'{"high":2}', IfMatch=first["ETag"]
    )
    with pytest.raises(botocore.exceptions.ClientError) as outdated:
        # A writer that read the first version loses to the one that wrote the second.
        s3.put_object(
            Bucket="drill", Key="watermark.json", Body=b'{"high":2,"x":1}', IfMatch=first["ETag"]
        )
    assert error_code(outdated.value) == "PreconditionFailed"

    got = s3.get_object(Bucket="drill", Key="watermark.json")
    assert (got["Body"].read(), got["ETag"]) == (b'{"high":2}', second["ETag"])
    with pytest.raises(botocore.exceptions.ClientError) as read_outdated:
        s3.get_object(Bucket="drill", Key="watermark.json", IfMatch=first["ETag"])
    assert error_code(read_outdated.value) == "PreconditionFailed"


def test_listing_pages_through_a_prefix_and_groups_by_delimiter(server: DiskS3) -> None:
    s3 = client_of(server)
    keys = [f"topics/t/partitions/0/records/{n:020}.batch" for n in range(2500)]
    keys += ["topics/t/partitions/0/watermark.json", "topics/u.json", "other/x"]
    for key in keys:
        s3.put_object(Bucket="drill", Key=key, Body=b"x")

    listed = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="drill", Prefix="topics/t/")
        for item in page.get("Contents", [])
    ]
    assert listed == sorted(key for key in keys if key.startswith("topics/t/"))

    grouped = s3.list_objects_v2(Bucket="drill", Prefix="topics/", Delimiter="/")
    assert [item["Key"] for item in grouped["Contents"]] == ["topics/u.json"]
    assert [item["Prefix"] for item in grouped["CommonPrefixes"]] == ["topics/t/"]

    s3.delete_objects(
        Bucket="drill", Delete={"Objects": [{"Key": "topics/u.json"}, {"Key": "other/x"}]}
    )
    assert s3.list_objects_v2(Bucket="drill", Prefix="other/")["KeyCount"] == 0


def test_what_was_answered_survives_a_sigkill(server: DiskS3) -> None:
    s3 = client_of(server)
    for n in range(50):
        s3.put_object(Bucket="drill", Key=f"k/{n}", Body=str(n).encode())

    server.restart(hard=True)

    s3 = client_of(server)
    assert [s3.get_object(Bucket="drill", Key=f"k/{n}")["Body"].read() for n in (0, 49)] == [
        b"0",
        b"49",
    ]
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        s3.head_bucket(Bucket="nobody")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_aws_chunked_framing_is_taken_off_the_payload() -> None:
    framed = (
        b"5;chunk-signature=ab\r\nhello\r\n3;chunk-signature=cd\r\n!!!\r\n"
        b"0\r\nx-amz-checksum-crc32:AAAA\r\n\r\n"
    )
    assert decode_aws_chunked(framed) == b"hello!!!"
