"""Small immutable value classes, without ``dataclasses``.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``, ``tokenize``) and runs
``exec`` on generated code for every class it decorates: about a fifth of a second per boot
under TCG emulation, paid again by every forked service. A :class:`Value` subclass declares
``__slots__`` and an ``__init__`` that sets them with :meth:`_set`; it gets equality, hashing,
``repr`` and :meth:`replace` from its slots, and refuses assignment afterwards.
"""

#: ``typing`` is not imported at run time (start-up cost); a type checker takes this branch.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


class Value:
    __slots__: tuple[str, ...] = ()

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _fields(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def replace(self, **changes: object) -> "Self":
        """A copy with some fields changed (like ``dataclasses.replace``)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._fields()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (use .replace())")
