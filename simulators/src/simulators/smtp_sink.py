"""An SMTP sink for local runs and tests: aiosmtpd takes every message and keeps it.

Counts are by the `X-Ledgerline-Send-Id` header, so a test can tell a double send. A small
HTTP control port answers `GET /_control/counts` (JSON: send id -> count) and
`DELETE /_control/messages`. Run it with
`python -m simulators.smtp_sink --port 9025 --control-port 9026`.
"""

import argparse
import json
import logging
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

logger = logging.getLogger("simulators.smtp_sink")


class Sink:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=default).parsebytes(envelope.content)
        send_id = str(message.get("X-Ledgerline-Send-Id", ""))
        with self.lock:
            self.counts[send_id] += 1
        logger.info("accepted send_id=%s to=%s", send_id, envelope.rcpt_tos)
        return "250 Message accepted for delivery"


def _control_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: Any = None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/_control/counts":
                with sink.lock:
                    self._answer(200, dict(sink.counts))
            else:
                self._answer(404, {"error": "not found"})

        def do_DELETE(self) -> None:
            with sink.lock:
                sink.counts.clear()
            self._answer(204)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9025)
    parser.add_argument("--control-port", type=int, default=9026)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    sink = Sink()
    controller = Controller(sink, hostname=args.host, port=args.port)
    controller.start()
    control = ThreadingHTTPServer((args.host, args.control_port), _control_handler(sink))
    try:
        threading.Thread(target=control.serve_forever, daemon=True).start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        control.shutdown()
        controller.stop()


if __name__ == "__main__":
    main()
