"""Typed configs for the train/ scripts: a YAML recipe, then `--field value` overrides.

Each script declares one dataclass; every field's `help` metadata becomes its --help text.
A recipe key that is not a field is an error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from pathlib import Path

import yaml


def field(default, help: str, **kw):
    """A dataclass field with help text (mutable defaults are copied per instance)."""
    if isinstance(default, list | dict):
        return dataclasses.field(
            default_factory=lambda: json.loads(json.dumps(default)), metadata={"help": help}, **kw
        )
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


def _parse_value(text: str, tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null"):
            return None
        return _parse_value(text, args[0])
    if tp is bool:
        if text.lower() in ("1", "true", "yes"):
            return True
        if text.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if origin in (list, dict) or tp in (list, dict):
        return yaml.safe_load(text) if text.strip().startswith(("[", "{")) else text.split(",")
    return tp(text)


def load_config(cls, recipe: str | Path | None = None, overrides: dict | None = None):
    """An instance of dataclass `cls` from a YAML recipe and a dict of overrides."""
    values: dict = {}
    if recipe:
        path = Path(recipe)
        if not path.exists():
            raise FileNotFoundError(f"recipe {path} does not exist")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"recipe {path} must be a mapping of field: value")
    values.update(overrides or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return cls(**values)


def parse_args(cls, argv: list[str] | None = None, description: str | None = None):
    """`script.py [--config recipe.yaml] [--field value ...]` -> instance of `cls`."""
    hints = typing.get_type_hints(cls)
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML recipe; command-line fields override it")
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} (default: {default!r})",
        )
    args = vars(parser.parse_args(argv))
    recipe = args.pop("config", None)
    try:
        overrides = {k: _parse_value(v, hints[k]) for k, v in args.items()}
        return load_config(cls, recipe, overrides)
    except (ValueError, TypeError, FileNotFoundError) as e:
        parser.error(str(e))


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)
