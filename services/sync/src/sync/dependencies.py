"""Dependency aliases of the sync endpoints."""

from typing import Annotated

from fastapi import Depends, Request

from sync.config import SyncSettings
from sync.crypto import Keyring


async def _settings(request: Request) -> SyncSettings:
    settings: SyncSettings = request.app.state.settings
    return settings


async def _keyring(request: Request) -> Keyring:
    keyring: Keyring = request.app.state.keyring
    return keyring


SettingsDep = Annotated[SyncSettings, Depends(_settings)]
KeyringDep = Annotated[Keyring, Depends(_keyring)]
