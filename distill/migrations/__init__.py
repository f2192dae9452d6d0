"""Alembic migrations, the only source of the schema (script_location "distill:migrations")."""
