"""Validating a config against its JSON schema: defaults filled in, every error named by its key path.

The schema (workflow/schemas/config.schema.yaml) is closed: a key it does not know is an error, reported with
its full path and, where one is close, the key that was probably meant
(`methods.ft.head_int: unknown setting; did you mean head_init?`). It is the one source of defaults: they are
written into the config here, so no code downstream repeats them.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any, Iterator, Sequence

from jsonschema import Draft202012Validator, validators

Schema = dict[str, Any]


def _fill_defaults(validator_class):
    properties = validator_class.VALIDATORS["properties"]

    def with_defaults(validator, props, instance, schema) -> Iterator:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from properties(validator, props, instance, schema)

    return validators.extend(validator_class, {"properties": with_defaults})


Validator = _fill_defaults(Draft202012Validator)


def _known_keys(schema: Schema, root: Schema) -> set[str]:
    """Every key a (sub)schema names, through allOf / anyOf / oneOf / if-then-else and local $refs."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    keys = set(schema.get("properties", {}))
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combinator, []):
            keys |= _known_keys(sub, root)
    for branch in ("then", "else"):
        if branch in schema:
            keys |= _known_keys(schema[branch], root)
    return keys


def _path(parts: Sequence[Any]) -> str:
    return ".".join(str(p) for p in parts) or "config"


def _messages(error, root: Schema, prefix: Sequence[str]) -> list[str]:
    where = [*prefix, *error.absolute_path]
    if error.validator in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        known = sorted(_known_keys(error.schema, root))
        out = []
        for key in sorted(k for k in error.instance if k not in known):
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"known: {', '.join(known) or 'none'}"
            out.append(f"{_path([*where, key])}: unknown setting; {hint}")
        return out
    return [f"{_path(where)}: {error.message}"]


def validate(config: dict[str, Any], schema: Schema, prefix: Sequence[str] = ()) -> list[str]:
    """Fill `config`'s defaults from `schema` in place; one message per error, each naming its key path under
    `prefix` (empty if valid)."""
    errors = sorted(Validator(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return [message for error in errors for message in _messages(error, schema, prefix)]
