"""Errors a person can act on. The CLI prints them without a traceback and exits non-zero."""


class AelabError(Exception):
    """An expected failure: the message says what was wrong and what to do."""


class DataError(AelabError):
    """A dataset file is missing, corrupt, or could not be fetched."""
