"""The job queue: `enqueue` makes jobs, `publish` sends their ids after the commit, `lease`
claims and finishes them under a lease, `runner` keeps many teacher requests in flight inside a
worker, `requeue` gives failed or truncated work another go, `status` reports progress.

Submodules are imported where they are used: `distill --help` must not pay for Celery."""
