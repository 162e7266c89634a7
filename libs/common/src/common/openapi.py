"""The OpenAPI document every service serves, made to say what the service really answers.

FastAPI's own document describes its default 422 body as `application/json`, declares no
security and leaves out the answers every protected or body-taking operation can give. This
rewrites the generated document once: one `Problem` schema (RFC 9457, `application/problem+json`)
for every error answer, and the answers the shared middleware and handlers give (401 where
the bearer scheme of `common.auth` applies, 413, 422, 429, and 503 on every operation: the
database may be out of reach for any of them, and at the gateway any service may be down or
slower than the gateway's bound).
"""

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from common.errors import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An error, as RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "`about:blank`: the status says it all"},
        "title": {"type": "string", "description": "A short summary of the status"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, for a person"},
        "errors": {
            "type": "array",
            "description": "One entry per invalid field",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string", "description": "Dotted path, e.g. `card.number`"},
                    "in": {
                        "type": "string",
                        "description": "Where the field was: body, query, path or header",
                    },
                    "message": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}

# The answers shared code gives, whichever operation it is.
STANDARD_ANSWERS = {
    401: "No valid access token: missing, expired, forged, or of a deleted account",
    413: "The request body is larger than the service accepts",
    422: "Invalid input; `errors` names each invalid field",
    429: "Too many requests from this client (the gateway's rate limit); see Retry-After",
    503: (
        "The database, or at the gateway the service behind the path, did not answer in time;"
        " nothing was done, and the same request may be sent again after Retry-After"
    ),
}


def _operations(document: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for item in document.get("paths", {}).values():
        for method, operation in item.items():
            if isinstance(operation, dict) and method != "parameters":
                yield operation


def _has_schema(answer: dict[str, Any]) -> bool:
    return any(media.get("schema") for media in answer.get("content", {}).values())


def _problem_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def describe(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a generated document in place so it matches the service's behaviour."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    for operation in _operations(document):
        answers: dict[str, Any] = operation.setdefault("responses", {})
        extra: list[int] = [429, 503]
        if operation.get("security"):  # common.auth's bearer scheme, on CurrentUser
            extra.append(401)
        if "requestBody" in operation:
            extra += [413, 422]
        if operation.get("parameters"):
            extra.append(422)
        for code in extra:
            answers.setdefault(str(code), {"description": STANDARD_ANSWERS[code]})
        for status, answer in answers.items():
            if status == "422":  # FastAPI's own validation body is not what we answer
                answers[status] = _problem_answer(STANDARD_ANSWERS[422])
            elif status[0] in "45" and not _has_schema(answer):
                # An error answer with a model of its own (a health check's DOWN) keeps it;
                # every other error is a problem document.
                description = answer.get("description") or STANDARD_ANSWERS.get(int(status), "")
                answers[status] = {**answer, **_problem_answer(description)}
    return document


def install_openapi(app: FastAPI) -> None:
    """Serve the described document; it is built once, on first request."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def link(
    method: str, path: str, body: dict[str, str] | None = None, **parameters: str
) -> dict[str, Any]:
    """An OpenAPI link from an answer to another operation, e.g.
    `link("GET", "/api/clients/{client_id}", client_id="$response.body#/id")`, or with
    `body={"client_id": "$response.body#/id"}` for fields of the next request's body: clients
    (and the fuzzer's stateful phase) learn which call can follow which.

    The path is the operation's path at the gateway, which is also its path in the service
    that serves it, so a link may name another service's operation (an invoice's emails are
    the email service's): it then resolves in the gateway's document, the union of the
    services' documents, and a reader of one service's document alone finds no such path
    there and leaves the link aside."""
    pointer = path.replace("~", "~0").replace("/", "~1")
    described: dict[str, Any] = {"operationRef": f"#/paths/{pointer}/{method.lower()}"}
    if parameters:
        described["parameters"] = parameters
    if body:
        described["requestBody"] = body
    return described
