"""A lean edge for hot reads: query parameters parsed by one model validation, a reply
serialized straight to bytes.

FastAPI's query-parameter models go through its dependency solver field by field (alias
lookup, sequence checks, a validation per field, then the model's), about a quarter of a
millisecond a request; and a returned model is validated again against the response model
before it is serialized. For the listing, which is served many times a second, both are
done here directly: the model validates the query string's values once, and the model the
endpoint built is serialized by its own serializer. The OpenAPI document and the 422
problem documents stay what FastAPI makes of the same model.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def query_model(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that builds `model` from the query string, as `Annotated[model,
    Query()]` does: the last value of a repeated parameter counts, and an invalid or unknown
    parameter is a 422 naming it (`in: query`)."""
    validate = model.model_validate

    # Async on purpose: FastAPI runs a plain `def` dependency in a thread pool.
    async def parse(request: Request) -> M:
        try:
            return validate(dict(request.query_params))
        except ValidationError as error:
            raise RequestValidationError(
                [
                    {**e, "loc": ("query", *e["loc"])}
                    for e in error.errors(include_url=False, include_context=False)
                ]
            ) from None

    return parse


def query_parameters(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route whose query string `query_model(model)` parses: the
    parameters FastAPI documents for `Annotated[model, Query()]`, taken from FastAPI itself.
    Their schemas may refer to components (an enum's); the route's reply must name them too,
    as the listing's does."""
    shadow = FastAPI()

    @shadow.get("/")
    async def documented(_query: Annotated[model, Query()]) -> None:  # type: ignore[valid-type]
        pass

    operation = shadow.openapi()["paths"]["/"]["get"]
    return {"parameters": operation["parameters"]}


class ModelResponse(Response):
    """A JSON reply of a model the endpoint built, by the model's own serializer: FastAPI
    does not validate a returned Response against the route's response model again."""

    media_type = "application/json"

    def __init__(self, content: BaseModel, status_code: int = 200) -> None:
        super().__init__(content.__pydantic_serializer__.to_json(content), status_code)
