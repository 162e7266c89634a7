"""The shared application shell: its OpenAPI document says what its handlers answer, and the
shared field types parse and write one form only."""

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, SecretStr, ValidationError

from common.app import create_service_app
from common.auth import CurrentUser
from common.config import BaseServiceSettings
from common.errors import PROBLEM_JSON, Conflict
from common.testing.identity import ISSUER, TestIssuer
from common.types import Money, NumberMoney, UtcDateTime


class Thing(BaseModel):
    amount: Money
    at: UtcDateTime


def build_app(test_issuer: TestIssuer) -> FastAPI:
    settings = BaseServiceSettings(
        environment="test",
        # Never connected to: these routes do not touch the database.
        database_url=SecretStr("mysql+asyncmy://nobody@127.0.0.1:9/none"),
        auth_jwks_url=test_issuer.jwks_url,
        auth_issuer=ISSUER,
    )

    def configure(app: FastAPI) -> None:
        @app.get("/things", responses={409: {"description": "Frozen"}})
        async def list_things(user: CurrentUser) -> list[Thing]:
            raise Conflict("frozen")

        @app.post("/things", status_code=201)
        async def create_thing(thing: Thing, user: CurrentUser) -> Thing:
            return thing

        @app.get("/public")
        async def public() -> dict[str, str]:
            return {"ok": "yes"}

    return create_service_app(settings, title="t", description="d", configure=configure)


@pytest.fixture(scope="module")
async def app(test_issuer: TestIssuer) -> AsyncIterator[FastAPI]:
    application = build_app(test_issuer)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: FastAPI, test_issuer: TestIssuer) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    headers = test_issuer.headers(uuid.uuid4())
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield c


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = document["paths"][path][method]
    return found


async def test_the_document_describes_errors_as_problems(api: httpx.AsyncClient) -> None:
    document = (await api.get("/openapi.json")).json()

    assert "HTTPValidationError" not in document["components"]["schemas"]
    create = operation(document, "post", "/things")
    for status in ("401", "413", "422", "429"):
        content = create["responses"][status]["content"]
        assert list(content) == [PROBLEM_JSON]
        assert content[PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}
    listing = operation(document, "get", "/things")
    assert listing["responses"]["409"]["description"] == "Frozen"
    assert list(listing["responses"]["409"]["content"]) == [PROBLEM_JSON]


async def test_the_bearer_scheme_is_declared_where_a_token_is_needed(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()

    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert operation(document, "post", "/things")["security"] == [{"bearerAuth": []}]
    assert "401" in operation(document, "post", "/things")["responses"]
    public = operation(document, "get", "/public")
    assert "security" not in public
    assert "401" not in public["responses"]
    assert "security" not in operation(document, "get", "/health/live")


async def test_a_missing_token_is_a_problem_not_a_default_error(api: httpx.AsyncClient) -> None:
    response = await api.get("/things", headers={"Authorization": ""})

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_wrong_method_names_every_method_of_the_path(api: httpx.AsyncClient) -> None:
    response = await api.request("OPTIONS", "/things")

    assert response.status_code == 405
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["allow"] == "GET, POST"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"amount": "1.00", "at": ', "is not valid JSON"),
        (b'{"amount": "\xff\xfe"}', "is not UTF-8 encoded JSON"),
    ],
    ids=["malformed", "not-utf8"],
)
async def test_an_unreadable_body_is_one_422_naming_the_body(
    api: httpx.AsyncClient, body: bytes, message: str
) -> None:
    response = await api.post("/things", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["errors"] == [{"field": "body", "in": "body", "message": message}]


async def test_amounts_and_times_come_back_in_their_one_written_form(
    api: httpx.AsyncClient,
) -> None:
    response = await api.post("/things", json={"amount": "1000", "at": "2026-11-24T06:33:05+02:00"})

    assert response.status_code == 201
    assert response.json() == {"amount": "1000.00", "at": "2026-11-24T04:33:05Z"}


@pytest.mark.parametrize(
    "text", ["1e3", " 5 ", "١٢", "5.", "-5", "0", "0.00", "01.5", "1.234", "12345678901", "+5"]
)
def test_money_takes_plain_ascii_decimals_only(text: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Thing(amount=text, at=datetime(2026, 1, 1))  # type: ignore[arg-type]

    assert refused.value.errors()[0]["loc"] == ("amount",)


@pytest.mark.parametrize(
    ("text", "value"), [("5", "5"), ("0.5", "0.5"), ("0.05", "0.05"), ("9999999999.99", None)]
)
def test_money_takes_what_its_pattern_documents(text: str, value: str | None) -> None:
    thing = Thing(amount=text, at=datetime(2026, 1, 1))  # type: ignore[arg-type]

    assert thing.amount == Decimal(value or text)


class SeedThing(BaseModel):
    amount: NumberMoney


# 9.7e307 is finite, but a hundred times it is not (the cross-service fuzzer found its 500).
@pytest.mark.parametrize(
    "number", [1.234, 0, -1, True, float("inf"), 1e10, 9.724658113172348e307, -1e308, "5"]
)
def test_a_json_number_amount_is_whole_cents(number: Any) -> None:
    with pytest.raises(ValidationError):
        SeedThing(amount=number)


def test_a_json_number_amount_keeps_its_cents() -> None:
    assert SeedThing(amount=199.99).amount == Decimal("199.99")  # type: ignore[arg-type]
    assert SeedThing(amount=7).model_dump(mode="json") == {"amount": 7.0}  # type: ignore[arg-type]


def test_a_time_without_offset_is_taken_as_utc() -> None:
    stored = datetime(2026, 11, 24, 4, 33, 5)  # a DATETIME column's value

    thing = Thing(amount=Decimal("1"), at=stored)

    assert thing.model_dump(mode="json")["at"] == "2026-11-24T04:33:05Z"


def test_uvicorn_serves_with_uvloop_and_httptools() -> None:
    """The services run `uvicorn` with its defaults (Dockerfile, Procfile): the C event loop
    and HTTP parser are picked when installed, and `uvicorn[standard]` installs them."""
    config = uvicorn.Config(FastAPI())
    config.load()

    assert config.http_protocol_class.__module__ == "uvicorn.protocols.http.httptools_impl"
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    assert loop_factory.__module__.startswith("uvloop")
