"""Errors every layer may raise and the Kedro glue recognises without importing the areas."""


class RefusedError(Exception):
    """The run was refused for a reason its message explains to a person; no traceback needed."""


class GateError(RefusedError):
    """A gate refused the run (bad data, a worse model): the message says why, the report how."""
