"""Exceptions meant for the user: the command line prints them as one line, without a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a value, a file); the message names it and says what was expected."""
