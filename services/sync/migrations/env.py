"""Alembic environment of sync_svc: runs migrations over the service's async engine."""

from common.db import run_migrations
from sync.config import get_settings
from sync.models import Base

run_migrations(get_settings().database_url.get_secret_value(), Base.metadata)
