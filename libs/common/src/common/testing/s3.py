"""S3-compatible object storage for tests and local runs: moto's server as a real process.

Invoice PDFs are stored in S3 and the email service reads them back to attach them, so both
services' tests need the same storage speaking the real S3 protocol over HTTP. moto keeps
everything in memory, which is what a test wants: a fresh store per server.

with S3Server() as s3:
    client = s3.client()
    client.create_bucket(Bucket="ledgerline-pdfs")
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from common.testing.servers import free_port, wait_for_port

# moto accepts any credentials; these keep boto3 from looking for real ones on the machine.
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto's placeholder, not a secret
REGION = "us-east-1"


class S3Server:
    """moto's server in its own process on a free loopback port, log written to a file."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        descriptor, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
        os.close(descriptor)
        self.log_path = Path(name)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """Variables that point boto3 (in this process or a child) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self, service: str = "s3") -> Any:
        """A boto3 client of this server (`s3`, or `ses`, `sns`: moto serves them all)."""
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def start(self, timeout: float = 60.0) -> "S3Server":
        command = [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for_port(self.host, self.port, timeout=timeout)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
