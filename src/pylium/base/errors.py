"""L0: the error hierarchy. Every error a user can see carries where it happened.

Only errors that some caller handles get a class of their own. Messages say what is wrong
and where (file, document, field path, key); programs print ``str(err)`` and exit non-zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class PyliumError(Exception):
    """Root of every error pylium raises on purpose."""


def format_path(path: Sequence[str | int]) -> str:
    """Render a field path the way kubectl does: ``spec.ingress[0].toPorts[0].ports[0].port``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class Location:
    """Where a problem is: a source (file name or ``<stdin>``), a document index, a field path."""

    source: str = ""
    document: int | None = None
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        parts = []
        if self.source:
            parts.append(self.source)
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.path:
            parts.append(format_path(self.path))
        return ": ".join(parts)


class ValidationError(PyliumError):
    """One or more invalid fields in a document; each problem carries its own location."""

    def __init__(self, problems: Iterable[tuple[Location, str]]) -> None:
        self.problems: tuple[tuple[Location, str], ...] = tuple(problems)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(f"{loc}: {msg}" if str(loc) else msg for loc, msg in self.problems)

    def with_source(self, source: str, document: int | None = None) -> ValidationError:
        """The same problems, placed in a file and document."""
        return ValidationError(
            (
                Location(
                    source=source,
                    document=document if document is not None else loc.document,
                    path=loc.path,
                ),
                msg,
            )
            for loc, msg in self.problems
        )


class ConfigError(PyliumError):
    """An invalid configuration value: names the key, the value and what is allowed."""

    def __init__(self, key: str, message: str, *, source: str = "") -> None:
        self.key = key
        self.source = source
        self.message = message
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}")


class AllocationError(PyliumError):
    """An allocator could not satisfy a request (pool exhausted, address not in range, ...)."""

    def __init__(self, pool: str, reason: str) -> None:
        self.pool = pool
        self.reason = reason
        super().__init__(f"{pool}: {reason}")


class StoreError(PyliumError):
    """A store operation failed; names the key (or prefix) involved."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"store: {key}: {message}")


class StoreUnavailable(StoreError):
    """The store could not be reached (etcd down, database locked for too long)."""


class CompactedError(StoreError):
    """A watch asked for history the store has already compacted away."""

    def __init__(self, key: str, requested: int, compact_revision: int) -> None:
        self.requested = requested
        self.compact_revision = compact_revision
        super().__init__(
            key,
            f"revision {requested} has been compacted (oldest available is "
            f"{compact_revision}); relist and watch from the current revision",
        )


class DatapathError(PyliumError):
    """A kernel operation failed: names the object (map, program, link) and the operation."""

    def __init__(self, obj: str, operation: str, message: str) -> None:
        self.obj = obj
        self.operation = operation
        super().__init__(f"{obj}: {operation}: {message}")


class AgentUnavailable(PyliumError):
    """The agent's API socket did not answer."""


class LabError(PyliumError):
    """The lab could not be built, inspected or torn down."""
