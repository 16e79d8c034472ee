"""Ordered plain SQL migrations and the runner that applies each exactly once."""

from migrations.runner import MigrationError, applied_migrations, available, migrate, pending

__all__ = ["MigrationError", "applied_migrations", "available", "migrate", "pending"]
