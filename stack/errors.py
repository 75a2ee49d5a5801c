"""Errors the stack reports to users as a message, never as a stack trace."""


class StackError(RuntimeError):
    """A component cannot be set up or started; the message says what to do about it."""
