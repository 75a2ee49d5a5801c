"""Errors the stack reports to users as a message, never as a stack trace."""

from streamrag.process import ProcessError

StackError = ProcessError
"""A component cannot be set up or started; the message says what to do about it (the same
class as the process helpers raise, so one ``except StackError`` covers both)."""
