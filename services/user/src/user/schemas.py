"""API models of the user service."""

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from common.types import SignedMoneyOut, UtcDateTime

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Place = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
PostalCode = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=20, pattern=r"^[A-Za-z0-9][A-Za-z0-9 \-]*$"
    ),
]
Country = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{2}$"),
    Field(description="ISO 3166-1 alpha-2, upper case"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- tokens -----------------------------------------------------------------------------------


class TokenResponse(BaseModel):
    """Platform tokens. `refresh_token` is absent when it travels in the cookie instead."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - the scheme's name, not a secret
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str | None = Field(
        None, description="Present when the client asked for tokens in the body"
    )
    user_id: uuid.UUID


class RefreshRequest(Strict):
    refresh_token: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Omit to use the refresh-token cookie a browser sign-in set",
    )


class ProviderList(BaseModel):
    providers: list[str]


# --- profile ----------------------------------------------------------------------------------


class Address(Strict):
    line1: Line
    line2: Line | None = None
    city: Place
    region: Place | None = None
    postal_code: PostalCode | None = None
    country: Country


class AddressRead(BaseModel):
    line1: str | None
    line2: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


class UserRead(BaseModel):
    id: uuid.UUID
    email: str | None
    name: str | None
    company_name: str | None
    address: AddressRead | None
    wallet_balance: SignedMoneyOut = Field(
        description="Read-only: kept by the payment service; a decimal string"
    )
    wallet_currency: str
    created_at: UtcDateTime
    updated_at: UtcDateTime


class UserUpdate(Strict):
    """Only the fields present change; null clears a field."""

    name: Name | None = None
    email: EmailStr | None = None
    company_name: Name | None = None
    address: Address | None = Field(None, description="Replaces the whole address; null clears it")
