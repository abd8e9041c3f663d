"""Errors every layer may raise and the Kedro glue recognises without importing the areas."""


class GateError(Exception):
    """A gate refused the run (bad data, a worse model): the message says why, the report how."""
