"""Dependency aliases of the user service's endpoints."""

from typing import Annotated

from fastapi import Depends, Request

from common.auth import CurrentUser
from common.db import ReadSessionDep, SessionDep
from user import service
from user.config import UserSettings
from user.crypto import SecretBox
from user.models import User
from user.oidc import ProviderRegistry


def _settings(request: Request) -> UserSettings:
    settings: UserSettings = request.app.state.settings
    return settings


SettingsDep = Annotated[UserSettings, Depends(_settings)]


def _secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


SecretBoxDep = Annotated[SecretBox, Depends(_secret_box)]


def _providers(request: Request) -> ProviderRegistry:
    providers: ProviderRegistry = request.app.state.providers
    return providers


ProvidersDep = Annotated[ProviderRegistry, Depends(_providers)]


async def _current_account(user: CurrentUser, session: SessionDep) -> User:
    """The account of a verified access token; a deleted account's tokens are refused."""
    return await service.get_account(session, user.id)


CurrentAccount = Annotated[User, Depends(_current_account)]


async def _account_to_read(user: CurrentUser, session: ReadSessionDep) -> User:
    """The account for an endpoint that only shows it: one query on the read engine."""
    return await service.get_account(session, user.id)


ReadAccount = Annotated[User, Depends(_account_to_read)]
