"""``DenseLayer`` and the helpers both Model API versions share to turn Python objects into config JSON.

Every object a script passes to ``Model.add`` becomes one entry of the HugeCTR JSON ``layers`` list;
``Model.compile`` parses that list with ``hugectr_lab.config.parse_config`` -- the same parser, the same
specs and the same checks as a JSON config, so a model has one description and two front ends.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from ..config import LAYER_KINDS

# v3.1 DenseLayer keywords no layer type of this project reads (GRU, Gather, PReLU_Dice, MultiHeadAttention, ...).
UNUSED_V31_KEYWORDS = {"time_step": 0, "batchsize": 1, "SeqLength": 1, "vector_size": 1, "indices": [],
                       "pos_type": "Static", "act_type": "Identity"}


def enum_name(value, what: str, allowed: Iterable[str] | None = None) -> str:
    """``Layer_t.ReLU`` (either version's enum) or the string "ReLU" → "ReLU"; anything else is an error
    naming ``what``."""
    name = value.name if isinstance(value, enum.Enum) else value
    if not isinstance(name, str):
        raise TypeError(f"{what} must be an enum member or its name, got {value!r}")
    allowed = tuple(allowed) if allowed is not None else None
    if allowed is not None and name not in allowed:
        raise ValueError(f"{what}: {name!r} is not supported here; choose one of {', '.join(allowed)}")
    return name


def name_list(value, what: str) -> list[str]:
    """A tensor-name list (a lone string is taken as a one-element list)."""
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"{what} must be a non-empty list of tensor names, got {value!r}")
    return names


def _initializer(value, what):
    name = enum_name(value, what, ("Default", "Uniform", "XavierNorm", "XavierUniform", "Zero"))
    return None if name == "Default" else name


class DenseLayer:
    """``DenseLayer(layer_type, bottom_names, top_names, ...)``: one dense or loss layer (v3.0 preview and v3.1).

    The keywords and defaults are HugeCTR's binding's (``factor=1.0, eps=1e-5, dropout_rate=0.5,
    elu_alpha=1.0, num_output=1, num_layers=0, leading_dim=1, selected=False, out_dim=0, axis=1, ...``;
    the regularizer weight is the keyword ``lambda``, passed as ``**{"lambda": 1e-4}`` or ``lambda_=``).
    Only the keywords of ``layer_type`` end up in the model; as in HugeCTR, a Reshape without
    ``selected`` uses ``leading_dim``, whose default 1 is almost never what a model needs.
    """

    def __init__(self, layer_type, bottom_names, top_names, factor=1.0, eps=1e-5, gamma_init_type="Default",
                 beta_init_type="Default", dropout_rate=0.5, elu_alpha=1.0, num_output=1, weight_init_type="Default",
                 bias_init_type="Default", num_layers=0, leading_dim=1, selected=False, selected_slots=(),
                 ranges=(), weight_dims=(), out_dim=0, axis=1, target_weight_vec=(), use_regularizer=False,
                 regularizer_type="L1", lambda_=0.0, **kwargs):
        if "lambda" in kwargs:
            lambda_ = kwargs.pop("lambda")
        for key, value in kwargs.items():
            if key not in UNUSED_V31_KEYWORDS:
                raise TypeError(f"DenseLayer() got an unexpected keyword argument {key!r}")
            if value != UNUSED_V31_KEYWORDS[key]:
                raise ValueError(f"DenseLayer({key}=...) belongs to a layer type this project does not implement "
                                 f"(GRU, Gather, PReLU_Dice, ...); see docs/compat.md")
        self.layer_type = enum_name(layer_type, "DenseLayer(layer_type=...)")
        if self.layer_type not in LAYER_KINDS:
            raise ValueError(f"DenseLayer(layer_type={self.layer_type}): not a layer type of this project; the "
                             f"supported ones are {', '.join(sorted(LAYER_KINDS))} (see docs/compat.md)")
        self.bottom_names = name_list(bottom_names, "DenseLayer(bottom_names=...)")
        self.top_names = name_list(top_names, "DenseLayer(top_names=...)")
        self.options = dict(factor=factor, eps=eps, gamma_init_type=gamma_init_type, beta_init_type=beta_init_type,
                            dropout_rate=dropout_rate, elu_alpha=elu_alpha, num_output=num_output,
                            weight_init_type=weight_init_type, bias_init_type=bias_init_type, num_layers=num_layers,
                            leading_dim=leading_dim, selected=selected, selected_slots=list(selected_slots),
                            ranges=[list(r) for r in ranges], weight_dims=list(weight_dims), out_dim=out_dim,
                            axis=axis, target_weight_vec=list(target_weight_vec), use_regularizer=use_regularizer,
                            regularizer_type=regularizer_type, lambda_=lambda_)

    def __repr__(self):
        return f"DenseLayer({self.layer_type}, bottom_names={self.bottom_names}, top_names={self.top_names})"

    def to_json(self, model=None) -> dict:
        """The layer's HugeCTR JSON object (named after its first top)."""
        o, t = self.options, self.layer_type
        what = f"DenseLayer({t})"
        out = {"name": self.top_names[0], "type": t,
               "bottom": self.bottom_names[0] if len(self.bottom_names) == 1 else self.bottom_names,
               "top": self.top_names[0] if len(self.top_names) == 1 else self.top_names}
        if t in ("InnerProduct", "FusedInnerProduct", "MultiCross"):
            group = {"num_output": o["num_output"]} if t != "MultiCross" else {"num_layers": o["num_layers"]}
            for key, arg in (("weight_init", "weight_init_type"), ("bias_init", "bias_init_type")):
                init = _initializer(o[arg], f"{what}.{arg}")
                if init is not None:
                    group[key] = init
            out["mc_param" if t == "MultiCross" else "fc_param"] = group
        elif t == "BatchNorm":
            group = {"factor": o["factor"], "eps": o["eps"]}
            for key, arg in (("gamma_init", "gamma_init_type"), ("beta_init", "beta_init_type")):
                init = _initializer(o[arg], f"{what}.{arg}")
                if init is not None:
                    group[key] = init
            out["bn_param"] = group
        elif t == "ELU":
            out["elu_param"] = {"alpha": o["elu_alpha"]}
        elif t == "Dropout":
            out["rate"] = o["dropout_rate"]
        elif t == "Reshape":
            if o["selected"]:
                out["selected"] = o["selected_slots"]
            else:
                out["leading_dim"] = o["leading_dim"]
        elif t == "Slice":
            out["ranges"] = o["ranges"]
        elif t == "FmOrder2":
            out["out_dim"] = o["out_dim"]
        elif t == "WeightMultiply":
            out["weight_dims"] = o["weight_dims"]
            init = _initializer(o["weight_init_type"], f"{what}.weight_init_type")
            if init is not None:
                out["weight_init"] = init
        elif t in ("ReduceSum", "ReduceMean"):
            out["axis"] = o["axis"]
        elif t in ("BinaryCrossEntropyLoss", "CrossEntropyLoss", "MultiCrossEntropyLoss"):
            if t == "MultiCrossEntropyLoss":
                out["target_weight"] = o["target_weight_vec"]
            if o["use_regularizer"]:
                out["regularizer"] = enum_name(o["regularizer_type"], f"{what}.regularizer_type", ("L1", "L2"))
                out["lambda"] = o["lambda_"]
        return out
