"""Exceptions that carry a user-facing message.

Every error a user can cause (bad data, bad config, bad arguments) is raised as a
subclass of :class:`HbvbenchError`; the CLI prints its message and exits non-zero
instead of showing a traceback.
"""


class HbvbenchError(Exception):
    """Base class for errors whose message is meant for the user."""


class DataError(HbvbenchError):
    """Raw or processed data is missing, malformed or out of range.

    The message names the file, basin or key and what was expected.
    """


class ConfigError(HbvbenchError):
    """A configuration (params.yaml, CLI option) is invalid."""


class SolverError(HbvbenchError):
    """A numerical solver failed (e.g. NaN in the state)."""


class TrainingError(HbvbenchError):
    """Training cannot continue (e.g. a non-finite loss)."""
