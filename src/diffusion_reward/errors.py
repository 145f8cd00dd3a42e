"""Exceptions meant for the user: the command line prints them as one line, without a traceback."""

import errno

# Errors of the place written to, not of the data: a full disk, a read-only or forbidden location.
PLACE_ERRORS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                errno.EROFS: "the location is read-only", errno.EACCES: "permission denied",
                errno.EPERM: "permission denied"}


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message names it and says what was expected."""
