"""Events the user service publishes on `user.events`; consumers keep slim copies.

The subject (and Kafka key) of each event is the user id. `user.registered` and
`user.updated` carry the whole profile as it now is, so a consumer keeps its copy by
overwriting, whatever it missed before; `user.deleted` tells it to forget the person.
"""

import uuid

from pydantic import BaseModel

TOPIC = "user.events"
SOURCE = "/services/user"

USER_REGISTERED = "user.registered"
USER_UPDATED = "user.updated"
USER_DELETED = "user.deleted"


class AddressData(BaseModel):
    line1: str | None
    line2: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None


class UserProfile(BaseModel):
    """The data of user.registered and user.updated."""

    user_id: uuid.UUID
    email: str | None
    name: str | None
    company_name: str | None
    address: AddressData | None


class UserDeleted(BaseModel):
    user_id: uuid.UUID


# Each event type's payload model: the events catalogue (docs/events.md) is written from it.
EVENTS: dict[str, type[BaseModel]] = {
    USER_REGISTERED: UserProfile,
    USER_UPDATED: UserProfile,
    USER_DELETED: UserDeleted,
}
