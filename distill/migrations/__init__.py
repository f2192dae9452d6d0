"""Alembic migrations, the only source of the schema (script_location "distill:migrations").

HEAD is the newest revision: what a database must be at for this code (distill.db checks it at
start, without loading Alembic; a test keeps it equal to Alembic's own head)."""

HEAD = "0002"
