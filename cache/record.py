"""`Record`: the one record type of minibuild, minirun and minicache, in place of `dataclasses.dataclass`.

Importing `dataclasses` pulls in `inspect` (and with it `ast`, `tokenize`, ...), and every decorated class
runs generated code: a share of the start-up of `minirun run` that plain classes do not pay. A Record takes its
fields from the class annotations (inherited ones first), its defaults from the class attributes (a list, dict
or set default is copied per instance), and offers __init__ (positional or keyword), __eq__, __repr__,
`as_dict()` and `replace()`. `frozen=True` makes it immutable and hashable, like `@dataclass(frozen=True)`;
a class that defines its own __hash__ keeps it.

    class Volume(Record):
        source: str
        destination: str
        readonly: bool = False

    class LayerInfo(Record, frozen=True):
        chain_id: str
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeVar

    R = TypeVar("R", bound="Record")

_MISSING = object()


class Record:
    _fields: tuple[str, ...] = ()

    def __init_subclass__(cls, frozen: bool = False) -> None:
        if frozen:
            cls.__setattr__ = _refuse_change  # type: ignore[assignment]
            cls.__delattr__ = _refuse_change  # type: ignore[assignment]
            if "__hash__" not in cls.__dict__:  # a class may hash (and compare) fewer fields than it has
                cls.__hash__ = _hash_fields  # type: ignore[assignment]
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            for name in klass.__dict__.get("__annotations__", {}):  # noqa: RUF063 - inspect is what we avoid
                if not name.startswith("_") and name not in names:
                    names.append(name)
        cls._fields = tuple(names)

    def __init__(self, *args: object, **kwargs: object) -> None:
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes at most {len(fields)} positional arguments")
        for name, value in zip(fields, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got two values for {name!r}")
            kwargs[name] = value
        for name in fields:
            value = kwargs.pop(name, _MISSING)
            if value is _MISSING:
                value = getattr(type(self), name, _MISSING)
                if value is _MISSING:
                    raise TypeError(f"{type(self).__name__} needs a value for {name!r}")
                if isinstance(value, (list, dict, set)):
                    value = value.copy()
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"{type(self).__name__} has no field(s) {', '.join(kwargs)}")

    def as_dict(self) -> dict[str, object]:
        """Fields as a dict, nested Records (also inside lists and tuples) converted too; ready for JSON."""
        return {name: _plain(getattr(self, name)) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._fields)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a non-frozen dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._fields)
        return f"{type(self).__name__}({inner})"


def replace(record: R, **changes: object) -> R:
    """A copy of `record` with `changes`, as `dataclasses.replace` (works for frozen Records too)."""
    return type(record)(**{**{name: getattr(record, name) for name in record._fields}, **changes})


def _refuse_change(self: Record, name: str, *_value: object) -> None:
    raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")


def _hash_fields(self: Record) -> int:
    return hash(tuple(getattr(self, n) for n in self._fields))


def _plain(value: object) -> object:
    if isinstance(value, Record):
        return value.as_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
