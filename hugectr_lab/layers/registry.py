"""``LAYERS``: HugeCTR layer type name -> layer class, filled by ``@register_layer``."""

from __future__ import annotations

from dataclasses import fields, is_dataclass

from ..config import LAYER_KINDS

LAYERS: dict = {}


def register_layer(type_name):
    """Class decorator: register a layer under its HugeCTR JSON type name. Its input count
    ``num_inputs`` comes from the config's ``LAYER_KINDS`` entry (``bottoms``), the one table of it."""

    def wrap(cls):
        if type_name in LAYERS and LAYERS[type_name] is not cls:
            raise ValueError(f"layer type {type_name!r} is registered twice")
        if type_name not in LAYER_KINDS:
            raise ValueError(f"layer type {type_name!r} has no entry in config.LAYER_KINDS (its params and arity)")
        cls.type_name = type_name
        cls.num_inputs = LAYER_KINDS[type_name].bottoms
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
