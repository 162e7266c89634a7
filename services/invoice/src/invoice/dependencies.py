"""Dependency aliases of the invoice endpoints.

Async on purpose: FastAPI runs a plain `def` dependency in a thread pool, a hop that costs
more than these lookups.
"""

from typing import Annotated

from fastapi import Depends, Request

from common.pagination import CursorCodec
from invoice.config import InvoiceSettings


async def _cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


CursorCodecDep = Annotated[CursorCodec, Depends(_cursor_codec)]


async def _settings(request: Request) -> InvoiceSettings:
    settings: InvoiceSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[InvoiceSettings, Depends(_settings)]
