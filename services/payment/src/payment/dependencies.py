"""Dependency aliases of the payment endpoints.

Async on purpose: FastAPI runs a plain `def` dependency in a thread pool, a hop that costs
more than these lookups.
"""

from typing import Annotated

from fastapi import Depends, Request

from payment.service import Charging


async def _charging(request: Request) -> Charging:
    """Sessions rather than one request session: a charge commits twice (see service.py)."""
    state = request.app.state
    return Charging(state.sessionmaker, state.provider, state.settings)


ChargingDep = Annotated[Charging, Depends(_charging)]
