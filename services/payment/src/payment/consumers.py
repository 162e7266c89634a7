"""Kafka handlers of the payment service, as thin as the routes: parse, call the service.

`user.deleted` from `user.events` closes the account here, so its unexpired access tokens are
refused by this service too. The worker wires these handlers into one consumer group with an
inbox, so a redelivered event is handled once.
"""

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from payment import service


class UserDeleted(BaseModel):
    user_id: uuid.UUID


async def on_user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    deleted = UserDeleted.model_validate(event.data)
    # The event's time, not ours: a backlog applied late still dates the deletion right.
    await service.close_owner_account(session, deleted.user_id, event.time)


CONSUMER_GROUP = "payment-service"
USER_TOPIC = "user.events"
HANDLERS: dict[str, Handler] = {
    "user.deleted": on_user_deleted,
}
TOPICS: list[str] = [USER_TOPIC]
