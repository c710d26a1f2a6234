"""``LAYERS``: HugeCTR layer type name -> layer class, filled by ``@register_layer``."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

LAYERS: dict = {}


def register_layer(type_name):
    """Class decorator: register a layer under its HugeCTR JSON type name."""

    def wrap(cls):
        if type_name in LAYERS and LAYERS[type_name] is not cls:
            raise ValueError(f"layer type {type_name!r} is registered twice")
        cls.type_name = type_name
        LAYERS[type_name] = cls
        return cls

    return wrap


def params_as_kwargs(params):
    """A config params dataclass (or a dict, or None) as constructor keyword arguments."""
    if params is None:
        return {}
    if is_dataclass(params):
        return {f.name: getattr(params, f.name) for f in fields(params)}
    return dict(params)


def create_layer(type_name, params=None):
    """Instantiate ``LAYERS[type_name]`` with ``params`` (dataclass, dict or None)."""
    try:
        cls = LAYERS[type_name]
    except KeyError:
        raise KeyError(f"unknown dense layer type {type_name!r}; known: {', '.join(sorted(LAYERS))}") from None
    return cls(**params_as_kwargs(params))
