"""Kafka handlers of the sync service, as thin as the routes: parse, call the service.

`user.deleted` from `user.events` forgets the account's connection and its sealed API key.
Job commands (`sync.jobs`) are not events of this kind: the worker's job consumer runs them
(see worker.py), outside one transaction, page by page.
"""

import uuid

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from common.events import CloudEvent
from common.inbox import Handler
from sync import service


class UserDeleted(BaseModel):
    user_id: uuid.UUID


async def on_user_deleted(session: AsyncSession, event: CloudEvent) -> None:
    deleted = UserDeleted.model_validate(event.data)
    await service.forget_owner(session, deleted.user_id)


CONSUMER_GROUP = "sync-service"
USER_TOPIC = "user.events"
HANDLERS: dict[str, Handler] = {
    "user.deleted": on_user_deleted,
}
TOPICS: list[str] = [USER_TOPIC]
