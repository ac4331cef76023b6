"""The one exception family of cigri. A subclass's docstring is its default message."""

from __future__ import annotations


class CigriError(Exception):
    """A cigri error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(CigriError):
    """The configuration is invalid."""


class JDLError(CigriError):
    """The JDL is invalid."""

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


class DuplicateTaskNames(JDLError):
    """Two parameter lines of one campaign start with the same word (the task name)."""


class NotFound(CigriError):
    """No such object."""


class CampaignNotFound(NotFound):
    """No campaign with this id."""


class JobNotFound(NotFound):
    """No job with this id."""


class ClusterNotFound(NotFound):
    """No cluster with this name or id."""


class Forbidden(CigriError):
    """You are not allowed to do this."""


class Conflict(CigriError):
    """The object is not in a state that allows this."""


class DatabaseUnavailable(CigriError):
    """The database cannot be reached."""
