"""Protobuf messages -> plain Python: dicts with field names, enum names, None for unset optionals."""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.json_format import ParseDict


def to_dict(message: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _scalar(value_field, item) for key, item in value.items()}
        elif field.is_repeated:
            out[field.name] = [_scalar(field, item) for item in value]
        elif field.has_presence and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _scalar(field, value)
    return out


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        named = field.enum_type.values_by_number.get(value)
        return named.name if named else value
    return value


def to_request(message_class: type, fields: dict[str, Any]) -> Any:
    """Build a request from keyword fields (nested dicts, maps, enum names all accepted)."""
    return ParseDict({name: value for name, value in fields.items() if value is not None}, message_class())


def frame(rows: Iterable[dict[str, Any]], index: str | None = None, columns: list[str] | None = None) -> pd.DataFrame:
    table = pd.DataFrame(list(rows), columns=columns)
    if index is not None and index in table.columns:
        table = table.set_index(index)
    return table


def times(values: Iterable[str]) -> pd.Index:
    """ISO-8601 strings as a DatetimeIndex (left as strings when they do not parse)."""
    values = list(values)
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, format="ISO8601"), name="time")
    except (ValueError, TypeError):
        return pd.Index(values, name="time")

