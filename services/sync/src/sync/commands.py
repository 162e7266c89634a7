"""The job command on `sync.jobs`: "sync this connection", internal to the sync service.

Published through the outbox like an event, keyed by owner so one owner's jobs stay in
order on one partition, and consumed by the workers' one consumer group (worker.py). Only the
message carrying the connection's current token may work on it: a redelivered or superseded
message finds another token and does nothing.
"""

import uuid
from typing import Literal

from pydantic import BaseModel

JOBS_TOPIC = "sync.jobs"
JOB_REQUESTED = "sync.job_requested"


class JobRequested(BaseModel):
    connection_id: uuid.UUID
    owner_id: uuid.UUID
    token: str
    reason: Literal["dispatch", "schedule", "manual", "connected", "continuation", "retry"]
