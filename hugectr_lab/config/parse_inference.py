"""The ``inference`` clause ↔ ``InferenceSpec``."""

from __future__ import annotations

from .errors import Loc
from .fields import read_object, write_fields
from .specs import InferenceSpec


def parse_inference(value, loc: Loc) -> InferenceSpec:
    # "label" appears in the Triton backend's samples; HugeCTR's parser never reads it.
    return read_object(InferenceSpec, value, loc, known=("label",))


def inference_to_json(spec: InferenceSpec) -> dict:
    # max_batchsize has a default in the session parser but HugeCTR's embedding cache requires the key.
    return write_fields(spec, always=("max_batchsize",))
