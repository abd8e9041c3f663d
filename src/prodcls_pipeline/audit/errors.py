"""What stops an audit, each with a message that says what to do: cheap to import, so the
command line can name them without loading MLflow."""


class AuditError(Exception):
    """Base of the errors an auditor can act on from the message alone."""


class VersionNotFoundError(AuditError, LookupError):
    """A model version the registry does not hold."""


class NoLineageError(AuditError, LookupError):
    """A version registered before lineage records were kept: it cannot be audited in full."""


class ReproductionError(AuditError, RuntimeError):
    """A version that cannot be restored (no commit, a missing drop, a patch that fails) or
    whose re-run failed."""
