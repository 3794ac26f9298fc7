"""Structured output: a JSON schema (or a pydantic model) the answers must follow.

``TextGeneration(response_format=Answer)`` (a pydantic model class) or
``response_format={"type": "object", ...}`` (a JSON schema dict) turns into one
:class:`OutputSchema`. It travels to the provider as the standard ``response_format``
option, ``{"type": "json_schema", "json_schema": {"name", "schema", "strict": True}}``,
which each plugin sends in its provider's own form (or refuses, naming the field, before
anything is paid). Each answer is then parsed and validated here: a model's answers
become model instances, a dict schema's answers dicts; an answer that does not
validate becomes an error row (with the validation message; the raw text is kept).

A pydantic model's schema is made *strict* the way OpenAI's and Anthropic's SDKs do it
(every object closed with ``additionalProperties: false``, every property required,
``default`` dropped): that is the form strict decoding needs, and the model still
validates what comes back. A dict schema is sent as it is: a provider that needs the
strict form refuses one that lacks it, with the rule and the place.

Validation of a dict schema uses :func:`schema_problem`, a small validator of the JSON
Schema subset providers enforce (types, properties, required, additionalProperties,
items, enum, const, anyOf/oneOf/allOf, local ``$ref``, bounds on numbers, strings and
arrays). Keywords outside it are left to the provider, which enforced them when decoding.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Mapping

from attrs import field, frozen

from overnight.errors import ConfigurationError

_NAME = re.compile(r"[^A-Za-z0-9_-]")
#: The name sent with a dict schema that gives none.
DEFAULT_NAME = "response"


def _is_model(value: Any) -> bool:
    """Whether ``value`` is a pydantic model class (without importing pydantic when it is not)."""
    return isinstance(value, type) and callable(getattr(value, "model_json_schema", None)) \
        and callable(getattr(value, "model_validate_json", None))


@frozen
class OutputSchema:
    """What a structured-output step asks for: a named JSON schema, maybe a pydantic model."""

    name: str
    schema: dict[str, Any]
    #: The pydantic model class, when the schema came from one (answers become instances).
    model: Any = field(default=None, eq=False)

    def signature(self) -> dict[str, Any]:
        """What identifies the outputs (for step caching): the schema, and the model's name."""
        model = None if self.model is None else f"{self.model.__module__}.{self.model.__qualname__}"
        return {"name": self.name, "schema": self.schema, "model": model}

    def response_format(self) -> dict[str, Any]:
        """The standard ``response_format`` generation option for this schema."""
        return {"type": "json_schema", "json_schema": {"name": self.name, "schema": self.schema, "strict": True}}

    def parse(self, text: str | None) -> tuple[Any, str | None]:
        """``(value, None)`` for an answer that validates, else ``(None, why not)``."""
        if text is None:
            return None, "the answer has no text"
        if self.model is not None:
            return self._parse_model(text)
        try:
            value = json.loads(text)
        except ValueError as exc:
            return None, f"the answer is not valid JSON ({exc})"
        problem = schema_problem(value, self.schema)
        if problem is not None:
            return None, f"the answer does not match the schema {self.name!r}: {problem}"
        return value, None

    def _parse_model(self, text: str) -> tuple[Any, str | None]:
        import pydantic

        try:
            return self.model.model_validate_json(text), None
        except pydantic.ValidationError as exc:
            lines = []
            for error in exc.errors()[:5]:
                where = ".".join(str(p) for p in error.get("loc", ())) or "the answer"
                lines.append(f"{where}: {error.get('msg')}")
            more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
            return None, f"the answer does not validate as {self.model.__name__}: " + "; ".join(lines) + more

    def to_json(self, value: Any) -> Any:
        """A parsed value in its JSON form (what the step writes to disk)."""
        if self.model is not None and value is not None:
            return value.model_dump(mode="json")
        return value

    def from_json(self, value: Any) -> Any:
        """The JSON form read back: a model instance for a model (the value was validated)."""
        if self.model is None or value is None:
            return value
        return self.model.model_validate(value)


def output_schema(value: Any) -> OutputSchema | None:
    """The :class:`OutputSchema` of ``TextGeneration(response_format=value)``; None for None.

    ``value`` is a pydantic model class, a JSON schema dict, or an OpenAI-style response
    format ``{"type": "json_schema", "json_schema": {"name", "schema"}}``.
    """
    if value is None or isinstance(value, OutputSchema):
        return value
    if _is_model(value):
        try:
            schema = value.model_json_schema()
        except Exception as exc:  # pydantic raises several kinds for types it cannot describe
            raise ConfigurationError(
                f"response_format: pydantic cannot give a JSON schema for {value.__name__} ({exc})"
            ) from None
        return OutputSchema(name=_name(value.__name__), schema=strict_schema(schema), model=value)
    if isinstance(value, type):
        raise ConfigurationError(
            f"response_format must be a pydantic model class or a JSON schema dict, got the class "
            f"{value.__name__} (install pydantic: pip install 'overnight[pydantic]')"
        )
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            f"response_format must be a pydantic model class or a JSON schema dict, got {type(value).__name__}"
        )
    if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
        spec = value["json_schema"]
        schema, name = spec.get("schema"), spec.get("name") or DEFAULT_NAME
    else:
        schema, name = value, value.get("title") or DEFAULT_NAME
    if not isinstance(schema, Mapping) or not schema:
        raise ConfigurationError("response_format: the JSON schema must be a non-empty dict")
    if schema.get("type") != "object":
        raise ConfigurationError(
            "response_format: the schema's root must be an object ({'type': 'object', 'properties': {...}}): "
            "that is what every provider's structured output takes"
        )
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"response_format: the schema is not JSON ({exc})") from None
    return OutputSchema(name=_name(str(name)), schema=dict(schema))


def _name(name: str) -> str:
    """A schema name providers accept: 1-64 of ``[A-Za-z0-9_-]``."""
    return _NAME.sub("_", name)[:64] or DEFAULT_NAME


def strict_schema(schema: Any) -> Any:
    """``schema`` in strict form: every object closed and all its properties required.

    A property that was optional becomes required; pydantic writes optional values as
    nullable (``anyOf [..., {"type": "null"}]``) when the model allows ``None``, so the model
    still accepts what a strict decoder produces. ``default`` is dropped (strict mode
    refuses it). Only schema keywords are walked: a field named ``type`` or ``properties``
    is a name, not a keyword.
    """
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "default":
            continue
        if key in _NAMED_SCHEMAS and isinstance(value, Mapping):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [strict_schema(sub) for sub in value]
        elif key in _SUBSCHEMAS:
            out[key] = strict_schema(value)
        else:
            out[key] = value
    if out.get("type") == "object" or "properties" in out:
        props = out.get("properties") or {}
        out["properties"] = props
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


_NAMED_SCHEMAS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
_SCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})
_SUBSCHEMAS = frozenset({"items", "additionalProperties", "not", "contains"})


# --- validation of a dict schema --------------------------------------------------------

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(schema: Any, root: Mapping[str, Any]) -> Any:
    for _ in range(32):
        if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
            return schema
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return {}  # a remote reference: not ours to follow (the provider resolved it)
        target: Any = root
        for part in ref[1:].strip("/").split("/"):
            if part:
                target = target.get(part) if isinstance(target, Mapping) else None
        schema = target if target is not None else {}
    return schema


def schema_problem(value: Any, schema: Any, *, root: Any = None, path: str = "$") -> str | None:
    """Why ``value`` does not validate against ``schema`` (the first problem), or None."""
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if schema is False:
        return f"{path}: no value is allowed here"
    if not isinstance(schema, Mapping):
        return None
    if "const" in schema and value != schema["const"]:
        return f"{path}: must be {schema['const']!r}, got {value!r}"
    if isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        return f"{path}: must be one of {schema['enum']!r}, got {value!r}"
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES.get(k, lambda v: True)(value) for k in names):
            return f"{path}: must be {' or '.join(map(str, names))}, got {_kind(value)}"
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            found = [schema_problem(value, o, root=root, path=path) for o in options]
            matches = sum(f is None for f in found)
            if matches == 0:
                return f"{path}: matches none of the {key} choices ({found[0]})"
            if key == "oneOf" and matches > 1:
                return f"{path}: matches {matches} of the oneOf choices, not exactly one"
    for sub in schema.get("allOf") or ():
        problem = schema_problem(value, sub, root=root, path=path)
        if problem:
            return problem
    if isinstance(value, dict):
        return _object_problem(value, schema, root, path)
    if isinstance(value, list):
        return _array_problem(value, schema, root, path)
    if isinstance(value, str):
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']} characters"
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']} characters"
        if isinstance(schema.get("pattern"), str):
            try:
                if re.search(schema["pattern"], value) is None:
                    return f"{path}: does not match the pattern {schema['pattern']!r}"
            except re.error:
                return None  # a pattern Python cannot read: the provider enforced it
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_problem(value, schema, path)
    return None


def _object_problem(value: dict[str, Any], schema: Mapping[str, Any], root: Any, path: str) -> str | None:
    props = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in value:
            return f"{path}: the required field {name!r} is missing"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        where = f"{path}.{name}"
        if name in props:
            problem = schema_problem(item, props[name], root=root, path=where)
        elif extra is False:
            return f"{path}: field {name!r} is not in the schema"
        else:
            problem = schema_problem(item, extra, root=root, path=where) if isinstance(extra, Mapping) else None
        if problem:
            return problem
    return None


def _array_problem(value: list[Any], schema: Mapping[str, Any], root: Any, path: str) -> str | None:
    if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
        return f"{path}: fewer than {schema['minItems']} items"
    if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
        return f"{path}: more than {schema['maxItems']} items"
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            problem = schema_problem(item, items, root=root, path=f"{path}[{i}]")
            if problem:
                return problem
    return None


def _number_problem(value: float, schema: Mapping[str, Any], path: str) -> str | None:
    def bound(key: str) -> float | None:
        b = schema.get(key)
        return b if isinstance(b, (int, float)) and not isinstance(b, bool) else None

    low, high, xlow, xhigh = bound("minimum"), bound("maximum"), bound("exclusiveMinimum"), bound("exclusiveMaximum")
    if low is not None and value < low:
        return f"{path}: {value} is below the minimum {low}"
    if high is not None and value > high:
        return f"{path}: {value} is above the maximum {high}"
    if xlow is not None and value <= xlow:
        return f"{path}: {value} is not above {xlow}"
    if xhigh is not None and value >= xhigh:
        return f"{path}: {value} is not below {xhigh}"
    return None


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


# --- OpenAI's strict mode ---------------------------------------------------------------

#: OpenAI's ceilings for a strict schema (platform.openai.com/docs/guides/structured-outputs,
#: "Supported schemas"; see docs/protocols/openai.md).
STRICT_MAX_PROPERTIES = 5000
STRICT_MAX_DEPTH = 10


def strict_mode_problem(schema: Any) -> tuple[tuple[str, ...], str] | None:
    """``(where, what)`` for the first rule of OpenAI's strict mode ``schema`` breaks, or None.

    The rules: the root is an object (not ``anyOf``); every object sets
    ``additionalProperties: false`` and lists every property in ``required``; at most
    5,000 properties and 10 levels of nesting. ``where`` is the path of keys to the
    offending object (``()`` for the root), the way OpenAI's errors give the context.
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        kind = schema.get("type") if isinstance(schema, Mapping) else type(schema).__name__
        return (), f"schema must be a JSON Schema of 'type: \"object\"', got 'type: \"{kind}\"'."
    count = 0

    def walk(node: Any, where: tuple[str, ...], depth: int) -> tuple[tuple[str, ...], str] | None:
        nonlocal count
        if not isinstance(node, Mapping):
            return None
        is_object = node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"]) \
            or "properties" in node
        if is_object:
            if depth > STRICT_MAX_DEPTH:
                return where, f"the schema nests objects more than {STRICT_MAX_DEPTH} levels deep."
            if node.get("additionalProperties") is not False:
                return where, "'additionalProperties' is required to be supplied and to be false."
            props = node.get("properties") or {}
            count += len(props)
            if count > STRICT_MAX_PROPERTIES:
                return where, f"the schema has more than {STRICT_MAX_PROPERTIES} object properties."
            required = node.get("required")
            missing = [p for p in props if not isinstance(required, list) or p not in required]
            if missing:
                return where, ("'required' is required to be supplied and to be an array including every key "
                               f"in properties. Missing '{missing[0]}'.")
            for name, sub in props.items():
                found = walk(sub, (*where, "properties", name), depth + 1)
                if found:
                    return found
        for key in ("items", "additionalProperties"):
            found = walk(node.get(key), (*where, key), depth + (key == "items"))
            if found:
                return found
        for key in ("anyOf", "allOf", "oneOf"):
            for i, sub in enumerate(node.get(key) or ()):
                found = walk(sub, (*where, key, str(i)), depth)
                if found:
                    return found
        for key in ("$defs", "definitions"):
            for name, sub in (node.get(key) or {}).items():
                found = walk(sub, (*where, key, name), 1)
                if found:
                    return found
        return None

    return walk(schema, (), 1)
