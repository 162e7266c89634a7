"""Write each service's OpenAPI document, as its app builds it, to web/openapi/<service>.json.

The web app's TypeScript types are generated from these files (`npm run types` in web/), so
the documents are the contract between the services and the browser. With `--check` nothing is
written: the command fails when a committed document differs from what the apps build now,
which is how `make web-test` catches an API change the web app has not been regenerated for.

No server, database or broker is needed: the apps are built with test settings and asked for
their documents, which FastAPI derives from the routes alone.
"""

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "web" / "openapi"

# service name -> (package, settings class, environment prefix)
SERVICES = {
    "user": ("user", "UserSettings", "USER_"),
    "invoice": ("invoice", "InvoiceSettings", "INVOICE_"),
    "payment": ("payment", "PaymentSettings", "PAYMENT_"),
    "sync": ("sync", "SyncSettings", "SYNC_"),
    "email": ("mailer", "EmailSettings", "EMAIL_"),
}
# Settings shared by every service (libs/common's ServiceSettings) read these names too.
SHARED_VARIABLES = ("LEDGERLINE_", "KAFKA_", "DATABASE_", "AUTH_")


def _clean_environment() -> None:
    """The documents must not depend on the machine: a deployment's variables (a fee, a
    default currency) would otherwise leak into descriptions and defaults."""
    prefixes = tuple(prefix for _, _, prefix in SERVICES.values()) + SHARED_VARIABLES
    for name in list(os.environ):
        if name.startswith(prefixes):
            del os.environ[name]


def build_document(service: str) -> dict[str, object]:
    package, settings_class, _ = SERVICES[service]
    config = importlib.import_module(f"{package}.config")
    main = importlib.import_module(f"{package}.main")
    settings = getattr(config, settings_class)(environment="test")
    document: dict[str, object] = main.create_app(settings).openapi()
    return document


def render(document: dict[str, object]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="fail when a committed document is stale"
    )
    args = parser.parse_args()
    _clean_environment()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stale = []
    for service in SERVICES:
        path = OUT_DIR / f"{service}.json"
        text = render(build_document(service))
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(str(path) for path in stale)
        print(
            f"Stale OpenAPI documents: {names}. Run `make web-types` and commit the result.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
