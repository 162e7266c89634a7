"""Kafka handlers of the payment service.

None yet: nothing the payment service does today waits on another service's events. The
design lists `invoice.*` and `user.registered` for later steps (the monthly billing run);
handlers are registered here so the worker wires them into one consumer group with an inbox.
"""

from common.inbox import Handler

CONSUMER_GROUP = "payment-service"
HANDLERS: dict[str, Handler] = {}
TOPICS: list[str] = []
