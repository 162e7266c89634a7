"""Kafka handlers of the user service.

None yet: the wallet balance on the profile (`wallet.*`) arrives with the payment service.
Handlers are registered here so the worker wires them into one consumer group with an inbox.
"""

from common.inbox import Handler

CONSUMER_GROUP = "user-service"
HANDLERS: dict[str, Handler] = {}
TOPICS: list[str] = []
