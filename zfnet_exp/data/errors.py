"""Errors a user can fix: the train task prints their message (one paragraph, problem + fix) without a
traceback and exits non-zero."""


class UserError(Exception):
    """A problem with the user's configuration or data, not a bug: shown without a traceback."""


class DataError(UserError):
    """A dataset folder is missing, has the wrong layout, or holds an unreadable file."""
