"""Example table for the layer harness: every registered layer type needs at least one entry here
(``test_every_registered_layer_has_a_case`` fails otherwise), so registering a layer puts it under
the shape, gradient, train/eval, save/load, fp16 and grad-overwrite checks."""

from dataclasses import dataclass

import numpy as np


@dataclass
class Case:
    params: dict
    shapes: list
    labels: str | None = None  # losses: "binary" {0, 1}, "masked" {-1, 0, 1}
    fd_inputs: tuple | None = None  # inputs whose gradient is checked (default: all)
    modes: tuple = ("float32", "float16")  # compute dtypes compared with float64
    stateful: bool = False  # train and eval forward differ (Dropout, BatchNorm)

    def inputs(self, rng):
        """float64 inputs exactly representable in fp16, so every precision sees the same values."""
        xs = [rng.normal(size=s).astype(np.float16).astype(np.float64) for s in self.shapes]
        if self.labels == "binary":
            xs[1] = rng.integers(0, 2, size=self.shapes[1]).astype(np.float64)
        elif self.labels == "masked":
            xs[1] = rng.integers(-1, 2, size=self.shapes[1]).astype(np.float64)
        return xs


BCE = dict(labels="binary", fd_inputs=(0,))

CASES = {
    "InnerProduct": [Case({"num_output": 3}, [(4, 5)]),
                     Case({"num_output": 2, "weight_init": "XavierUniform", "bias_init": "Uniform"}, [(3, 4)])],
    "FusedInnerProduct": [Case({"num_output": 64}, [(32, 3)], modes=("float16",))],
    "ReLU": [Case({}, [(4, 6)])],
    "ELU": [Case({"alpha": 0.7}, [(4, 6)])],
    "Sigmoid": [Case({}, [(4, 5)])],
    "Softmax": [Case({}, [(4, 5)]), Case({}, [(2, 3, 4)])],
    "BatchNorm": [Case({"factor": 0.3, "eps": 1e-5}, [(6, 4)], stateful=True),
                  Case({"factor": 1.0, "eps": 1e-3, "gamma_init": "Zero"}, [(5, 3)], stateful=True)],
    "Concat": [Case({}, [(3, 2), (3, 4), (3, 1)])],
    "Slice": [Case({"ranges": [(0, 3), (1, 5), (4, 6)]}, [(3, 6)])],
    "Dropout": [Case({"rate": 0.4}, [(5, 6)], stateful=True)],
    "Reshape": [Case({"leading_dim": 8}, [(3, 4, 2)]),
                Case({}, [(3, 4, 2)]),
                Case({"leading_dim": 8}, [(4, 4)]),
                Case({"selected": (2, 0, 2)}, [(3, 4, 2)]),
                Case({"selected": ()}, [(2, 3, 2)])],
    "MultiCross": [Case({"num_layers": 3}, [(4, 5)])],
    "FmOrder2": [Case({"out_dim": 3}, [(4, 12)])],
    "WeightMultiply": [Case({"weight_dims": (3, 4)}, [(5, 3)]),
                       Case({"weight_dims": (2, 1), "weight_init": "XavierNorm"}, [(4, 2)])],
    "Add": [Case({}, [(3, 4)] * 3)],
    "Sub": [Case({}, [(3, 4)] * 2)],
    "DotProduct": [Case({}, [(3, 4)] * 3)],
    "ElementwiseMultiply": [Case({}, [(3, 4)] * 3)],
    "ReduceSum": [Case({"axis": 1}, [(3, 4)]), Case({"axis": 2}, [(2, 3, 4)]), Case({"axis": 0}, [(5,)])],
    "ReduceMean": [Case({"axis": 1}, [(3, 4)]), Case({"axis": 0}, [(2, 3, 4)])],
    "Interaction": [Case({}, [(3, 4), (3, 3, 4)])],
    "Cast": [Case({}, [(3, 4)], fd_inputs=())],
    "BinaryCrossEntropyLoss": [Case({}, [(6, 1), (6, 1)], **BCE),
                               Case({"regularizer": "L2", "lambda_": 0.1}, [(6, 1), (6, 1)], **BCE)],
    "CrossEntropyLoss": [Case({}, [(6, 2), (6, 1)], **BCE)],
    "MultiCrossEntropyLoss": [Case({"target_weight": (1.0, 0.5, 2.0)}, [(6, 3), (6, 3)], labels="masked",
                                   fd_inputs=(0,))],
}


def all_cases():
    """(id, type name, case) for pytest parametrization."""
    out = []
    for type_name, cases in sorted(CASES.items()):
        for i, case in enumerate(cases):
            out.append((f"{type_name}-{i}", type_name, case))
    return out
