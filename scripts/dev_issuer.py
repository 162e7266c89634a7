"""A development stand-in for the user service's token issuing, until that service exists.

`serve` publishes a JWKS on 127.0.0.1:8101/.well-known/jwks.json (where the user service will
serve it) from a key kept in .run/dev-issuer-key.json; `token [USER_ID]` prints an access token
signed with that key, for curl or Postman. The services verify these tokens exactly as they
will verify the user service's.
"""

import argparse
import json
import signal
import uuid
from pathlib import Path

from joserfc.jwk import RSAKey

from common.testing.identity import TestIssuer

KEY_FILE = Path(__file__).resolve().parent.parent / ".run" / "dev-issuer-key.json"
PORT = 8101
ISSUER = "ledgerline"


def load_key() -> RSAKey:
    if KEY_FILE.exists():
        return RSAKey.import_key(json.loads(KEY_FILE.read_text()))
    key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex})
    KEY_FILE.parent.mkdir(exist_ok=True)
    KEY_FILE.write_text(json.dumps(key.as_dict(private=True)))
    KEY_FILE.chmod(0o600)
    return key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve")
    token = sub.add_parser("token")
    token.add_argument("user_id", nargs="?", default="00000000-0000-7000-8000-000000000001")
    args = parser.parse_args()
    key = load_key()
    if args.command == "token":
        issuer = TestIssuer(key, issuer=ISSUER)
        print(issuer.token(uuid.UUID(args.user_id), exp=issuer.claims(uuid.uuid4())["exp"] + 3600))
        return
    issuer = TestIssuer(key, port=PORT, issuer=ISSUER).start()
    print(f"dev token issuer: JWKS at {issuer.jwks_url}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    issuer.stop()


if __name__ == "__main__":
    main()
