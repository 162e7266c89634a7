"""Kafka handlers of the invoice service.

None yet: the owner profile (`user.*`), imported invoices (`billing.invoice_imported`) and
payments (`payment.*`) arrive with the services that publish them. Handlers are registered
here so the worker wires them into one consumer group with an inbox.
"""

from common.inbox import Handler

CONSUMER_GROUP = "invoice-service"
HANDLERS: dict[str, Handler] = {}
TOPICS: list[str] = []
