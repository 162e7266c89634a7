"""Dependency aliases of the invoice endpoints."""

from typing import Annotated

from fastapi import Depends, Request

from common.pagination import CursorCodec
from invoice.config import InvoiceSettings


def _cursor_codec(request: Request) -> CursorCodec:
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


CursorCodecDep = Annotated[CursorCodec, Depends(_cursor_codec)]


def _settings(request: Request) -> InvoiceSettings:
    settings: InvoiceSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[InvoiceSettings, Depends(_settings)]
