"""The OpenAPI documents as a client meets them: each service's own, and the gateway's.

The gateway has no document of its own: it routes paths to the services unchanged, so its
API is the union of the services' documents, each path taken from the service the gateway
sends it to (ROUTES mirrors deploy/gateway/ledgerline.conf.template, first match wins as
nginx's regex locations do). A link between services (an invoice's emails) resolves only in
that union; fuzzing one service directly, such links are left out.
"""

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

# (path pattern, service); None for paths the gateway refuses (404) to outsiders.
ROUTES: list[tuple[re.Pattern[str], str | None]] = [
    (re.compile(pattern), service)
    for pattern, service in [
        (r"/internal(/|$)", None),
        (r"^/api/auth/", "user"),
        (r"^/api/users/", "user"),
        (r"^/\.well-known/jwks\.json$", "user"),
        (r"^/api/invoices/[^/]+/emails$", "email"),
        (r"^/api/emails(/|$)", "email"),
        (r"^/webhooks/", "email"),
        (r"^/api/(invoices|clients)(/|$)", "invoice"),
        (r"^/(invoice|invoices)(/|$)", "invoice"),
        (r"^/health-check$", "invoice"),
        (r"^/api/(payments|wallet|payment-methods|billing-runs)(/|$)", "payment"),
        (r"^/api/sync(/|$)", "sync"),
    ]
]


def routed_to(path: str) -> str | None:
    """The service the gateway sends a path to; None when it answers it itself (404)."""
    for pattern, service in ROUTES:
        if pattern.search(path):
            return service
    return None


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if isinstance(operation, dict) and method != "parameters":
                yield path, method, operation


def links(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every link: (the operation it starts from, its name, its definition)."""
    for path, method, operation in operations(document):
        for answer in operation.get("responses", {}).values():
            for name, described in answer.get("links", {}).items():
                yield f"{method.upper()} {path}", name, described


def resolves(document: dict[str, Any], reference: str) -> bool:
    """Whether a local operationRef (`#/paths/<pointer>/<method>`) names one of the document's
    operations."""
    if not reference.startswith("#/paths/"):
        return False
    pointer, _, method = reference.removeprefix("#/paths/").rpartition("/")
    path = pointer.replace("~1", "/").replace("~0", "~")
    return method in document.get("paths", {}).get(path, {})


def without_foreign_links(document: dict[str, Any]) -> dict[str, Any]:
    """A copy without the links to other services' operations (they resolve at the gateway)."""
    own = copy.deepcopy(document)
    for _, _, operation in operations(own):
        for answer in operation.get("responses", {}).values():
            named = answer.get("links")
            if named:
                answer["links"] = {
                    name: described
                    for name, described in named.items()
                    if resolves(own, described.get("operationRef", ""))
                }
    return own


def _renamed_schemas(document: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The document with `#/components/schemas/<old>` references renamed."""
    text = json.dumps(document)
    for old, new in names.items():
        text = text.replace(f'"#/components/schemas/{old}"', f'"#/components/schemas/{new}"')
    renamed: dict[str, Any] = json.loads(text)
    schemas = renamed.get("components", {}).get("schemas", {})
    for old, new in names.items():
        schemas[new] = schemas.pop(old)
    return renamed


def gateway_document(documents: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The union of the services' documents (by service name) as the gateway routes them.

    A schema name two services use for different schemas is prefixed with the service's name
    (`email.Page`) in that service's part; any other component (security schemes, headers,
    the shared `Problem` schema) must be the same in every service."""
    merged: dict[str, Any] = {
        "openapi": next(iter(documents.values()))["openapi"],
        "info": {"title": "Ledgerline, at the gateway", "version": "1"},
        "paths": {},
        "components": {"schemas": {}},
    }
    components = merged["components"]
    for service, document in documents.items():
        own = document.get("components", {}).get("schemas", {})
        clashes = {
            name: f"{service}.{name}"
            for name, schema in own.items()
            if name in components["schemas"] and components["schemas"][name] != schema
        }
        document = _renamed_schemas(document, clashes) if clashes else document
        # Schemas, headers, security schemes...: the same name means the same thing in every
        # service (common.openapi), but for the schemas renamed above.
        for section, entries in document.get("components", {}).items():
            for name, entry in entries.items():
                if components.setdefault(section, {}).setdefault(name, entry) != entry:
                    raise ValueError(f"components.{section}.{name} differs between services")
        for path, item in document.get("paths", {}).items():
            if routed_to(path) == service:
                merged["paths"][path] = item
    return merged
