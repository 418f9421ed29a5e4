"""What crosses the network: JSON, never pickle.

Inputs and outputs are encoded with :func:`encode` (dataclasses become their
fields; anything else that is not JSON data is refused with an error naming
what it belongs to) and decoded with :func:`decode` (objects come back as
:class:`Record`, a dict whose keys also read as attributes, so that
``request.data.difficulty`` works on what was a dataclass).
"""

import dataclasses
import json
from typing import Any


class EncodeError(ValueError):
    """A value cannot be sent: it is not JSON data (dicts with string keys,
    lists, tuples, str, int, float, bool, None, or dataclasses of those), or
    it holds NaN or an infinity. The message names the task and the value's
    place."""


class Record(dict):
    """A JSON object as received: a dict whose keys are also attributes.

    ``record["difficulty"]`` and ``record.difficulty`` read the same value.
    A key that names a dict method (``items``, ``keys``, ``values``,
    ``get``...) is reached by indexing only. A missing key raises
    ``AttributeError`` as an attribute, ``KeyError`` as an index.
    """

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(
                f"no field {key!r} (fields: {', '.join(map(repr, self)) or 'none'})"
            ) from None

    def __dir__(self):
        return list(super().__dir__()) + [k for k in self if isinstance(k, str)]


def _fields(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # A field with init=False may be unset: getattr then raises.
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(
        f"a {type(value).__name__} is not JSON data (send dicts, lists, str, int, "
        "float, bool, None or dataclasses of those)"
    )


def encode(value: Any, what: str) -> bytes:
    """``value`` as compact UTF-8 JSON; ``what`` names it in the error
    (``"input_data of task 'Task 1'"``). Raises :class:`EncodeError`."""
    try:
        text = json.dumps(
            value,
            default=_fields,
            allow_nan=False,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        # A lone surrogate ("\ud800") is a str but not text: UTF-8 refuses it.
        return text.encode("utf-8")
    except Exception as e:  # also whatever a dataclass's fields raise
        raise EncodeError(f"{what} cannot be sent as JSON: {type(e).__name__}: {e}") from e


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def decode(raw: bytes) -> Any:
    """What :func:`encode` wrote, with objects as :class:`Record`.

    Any bytes that are JSON decode as JSON, whoever sent them: a task
    file's plain-text ``input = "42"`` arrives as the number 42, and
    ``"true"`` as True. Other UTF-8 text (a command worker's plain output,
    ``NaN``) comes back as a str, bytes that are not UTF-8 as bytes, and
    empty bytes as None. A JSON number too large for a float (``1e400``)
    arrives as ``inf``."""
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)
    try:
        return json.loads(text, object_hook=Record, parse_constant=_not_json)
    except (ValueError, RecursionError):
        return text
