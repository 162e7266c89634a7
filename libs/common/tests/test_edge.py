"""The lean edge parses a query string and documents it as FastAPI does for the same model,
and answers with the model's own serialization."""

from enum import StrEnum
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from common.edge import ModelResponse, query_model, query_parameters
from common.errors import install_error_handlers
from common.openapi import install_openapi


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, description="Names starting with this")
    colour: Colour | None = None
    order: Literal["asc", "desc"] = "desc"
    limit: int = Field(10, ge=1, le=100)


class Reply(BaseModel):
    filters: Filters
    colours: list[Colour]


def build_app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/framework", response_model=Reply)
    async def framework(filters: Annotated[Filters, Query()]) -> Reply:
        return Reply(filters=filters, colours=list(Colour))

    @app.get("/lean", response_model=Reply, openapi_extra=query_parameters(Filters))
    async def lean(filters: Annotated[Filters, Depends(query_model(Filters))]) -> ModelResponse:
        return ModelResponse(Reply(filters=filters, colours=list(Colour)))

    install_openapi(app)
    return app


@pytest.fixture
async def api() -> Any:
    transport = httpx.ASGITransport(app=build_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://edge.test") as client:
        yield client


def test_the_document_names_the_same_parameters() -> None:
    paths = build_app().openapi()["paths"]

    assert paths["/lean"]["get"]["parameters"] == paths["/framework"]["get"]["parameters"]
    assert paths["/lean"]["get"]["responses"] == paths["/framework"]["get"]["responses"]


@pytest.mark.parametrize(
    "query",
    [
        "",
        "name=ab&colour=blue&order=asc&limit=5",
        "limit=2&limit=7",  # the last value counts
        "limit=0",
        "limit=x",
        "colour=green",
        "name=",
        "order=up&limit=101",
        "unknown=1",
        "unknown=1&unknown=2",
    ],
)
async def test_a_query_string_is_answered_as_the_framework_answers_it(
    api: httpx.AsyncClient, query: str
) -> None:
    framework = await api.get(f"/framework?{query}")
    lean = await api.get(f"/lean?{query}")

    assert lean.status_code == framework.status_code
    assert lean.headers["content-type"] == framework.headers["content-type"]
    assert lean.json() == framework.json()
