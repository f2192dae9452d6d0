"""Errors a user can fix. The CLI prints these as one line on stderr and exits non-zero."""


class UserError(Exception):
    """Bad input, bad configuration, or a request the data cannot satisfy."""
