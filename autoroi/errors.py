"""Typed errors. Each one carries a message that names what is wrong and is safe
to print: no credentials, no row values."""

from __future__ import annotations


class AutoroiError(Exception):
    """Base class; the CLI prints ``str(error)`` as its one-line reason."""


class ConfigError(AutoroiError):
    """The configuration (file, environment or flag) is invalid."""


class SourceError(AutoroiError):
    """The source database cannot be reached, authenticated or read."""


class UnknownTableError(SourceError):
    """A configured table does not exist in the source."""


class LakeError(AutoroiError):
    """The lake cannot be read or written."""


class SchemaDriftError(AutoroiError):
    """A source column changed in a way the lake table cannot follow."""


class ValidationFailed(AutoroiError):
    """The master table failed a data-validation check; nothing was published."""


class AnonymizationError(AutoroiError):
    """Anonymization cannot run safely (no usable key, an unusable column)."""


class PiiLeakError(AutoroiError):
    """The PII-scan gate found personal data in an output; nothing is published."""


class MasterTableError(AutoroiError):
    """The master table cannot be built from the curated tables (a table or column is missing)."""


class RegistryError(AutoroiError):
    """The model registry refuses an operation (unknown version, a status change
    the transition table forbids, a digest that does not match)."""


class StatusTransitionError(RegistryError):
    """A status change the transition table forbids; names the version, its
    current status and the requested one."""

    def __init__(self, version: str, current: str, requested: str, why: str = "") -> None:
        self.version = version
        self.current = current
        self.requested = requested
        text = f"model version {version}: cannot change status from {current} to {requested}"
        super().__init__(f"{text}: {why}" if why else text)


class NotifyError(AutoroiError):
    """A reviewer notification could not be delivered (names the channel, never a secret URL)."""
