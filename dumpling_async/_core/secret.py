"""The API key, wrapped so that no repr, log line or traceback local can show it."""

from __future__ import annotations

__all__ = ["Secret"]


class Secret:
    """An opaque string holder whose repr and str never reveal the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """Return the wrapped value; call it only where the value is sent."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (e.g. for worker processes) keeps the value but not in any text form.
        return (Secret, (self._value,))
