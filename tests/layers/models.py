"""Small versions of the HugeCTR sample dense graphs (DCN, DeepFM, WDL, DLRM) as LayerSpec-like
objects, fed by an embedding output ``sparse_embedding1`` (b, S, E), ``dense`` (b, 13) and ``label``."""

from types import SimpleNamespace

DENSE = 13


def layer(type, name, bottoms, tops, **params):
    return SimpleNamespace(type=type, name=name, bottoms=bottoms, tops=tops, params=params or None)


def inputs(batch, slots, vec, embeddings=("sparse_embedding1",)):
    shapes = {"label": (batch, 1), "dense": (batch, DENSE)}
    shapes.update({name: (batch, slots, vec) for name in embeddings})
    return shapes


def dcn(slots, vec, hidden, cross_layers=3, dropout_rate=0.5):
    width = slots * vec + DENSE
    return [
        layer("Reshape", "reshape1", "sparse_embedding1", "reshape1", leading_dim=slots * vec),
        layer("Concat", "concat1", ["reshape1", "dense"], "concat1"),
        layer("Slice", "slice1", "concat1", ["slice11", "slice12"], ranges=[(0, width), (0, width)]),
        layer("MultiCross", "multicross1", "slice11", "multicross1", num_layers=cross_layers),
        layer("InnerProduct", "fc1", "slice12", "fc1", num_output=hidden),
        layer("ReLU", "relu1", "fc1", "relu1"),
        layer("Dropout", "dropout1", "relu1", "dropout1", rate=dropout_rate),
        layer("InnerProduct", "fc2", "dropout1", "fc2", num_output=hidden),
        layer("ReLU", "relu2", "fc2", "relu2"),
        layer("Dropout", "dropout2", "relu2", "dropout2", rate=dropout_rate),
        layer("Concat", "concat2", ["dropout2", "multicross1"], "concat2"),
        layer("InnerProduct", "fc4", "concat2", "fc4", num_output=1),
        layer("BinaryCrossEntropyLoss", "loss", ["fc4", "label"], "loss"),
    ]


def deepfm(slots, hidden, latent=10, dropout_rate=0.5):
    vec = latent + 1
    return [
        layer("Reshape", "reshape1", "sparse_embedding1", "reshape1", leading_dim=vec),
        layer("Slice", "slice1", "reshape1", ["slice11", "slice12"], ranges=[(0, latent), (latent, vec)]),
        layer("Reshape", "reshape2", "slice11", "reshape2", leading_dim=slots * latent),
        layer("Reshape", "reshape3", "slice12", "reshape3", leading_dim=slots),
        layer("Slice", "slice2", "dense", ["slice21", "slice22"], ranges=[(0, DENSE), (0, DENSE)]),
        layer("WeightMultiply", "weight_multiply1", "slice21", "weight_multiply1", weight_dims=(DENSE, latent)),
        layer("WeightMultiply", "weight_multiply2", "slice22", "weight_multiply2", weight_dims=(DENSE, 1)),
        layer("Concat", "concat1", ["reshape2", "weight_multiply1"], "concat1"),
        layer("Slice", "slice3", "concat1", ["slice31", "slice32"],
              ranges=[(0, (slots + DENSE) * latent), (0, (slots + DENSE) * latent)]),
        layer("InnerProduct", "fc1", "slice31", "fc1", num_output=hidden),
        layer("ReLU", "relu1", "fc1", "relu1"),
        layer("Dropout", "dropout1", "relu1", "dropout1", rate=dropout_rate),
        layer("InnerProduct", "fc2", "dropout1", "fc2", num_output=1),
        layer("FmOrder2", "fmorder2", "slice32", "fmorder2", out_dim=latent),
        layer("ReduceSum", "reducesum1", "fmorder2", "reducesum1", axis=1),
        layer("Concat", "concat2", ["reshape3", "weight_multiply2"], "concat2"),
        layer("ReduceSum", "reducesum2", "concat2", "reducesum2", axis=1),
        layer("Add", "add", ["fc2", "reducesum1", "reducesum2"], "add"),
        layer("BinaryCrossEntropyLoss", "loss", ["add", "label"], "loss"),
    ]


def dlrm(vec, fused, bottom_mlp=(32, 16), top_mlp=(64, 64)):
    """Bottom MLP on dense ending at width vec, Interaction with the embeddings, top MLP, logit.
    ``fused`` uses FusedInnerProduct (mixed precision; widths must be multiples of 64)."""
    specs = []

    def mlp(prefix, bottom, widths):
        for i, n in enumerate(widths):
            name = f"{prefix}{i}"
            if fused:
                specs.append(layer("FusedInnerProduct", name, bottom, name, num_output=n))
                bottom = name
            else:
                specs.append(layer("InnerProduct", name, bottom, name, num_output=n))
                specs.append(layer("ReLU", f"relu_{name}", name, f"relu_{name}"))
                bottom = f"relu_{name}"
        return bottom

    bottom = mlp("bottom_fc", "dense", tuple(bottom_mlp) + (vec,))
    specs.append(layer("Interaction", "interaction1", [bottom, "sparse_embedding1"], "interaction1"))
    top = mlp("top_fc", "interaction1", top_mlp)
    specs.append(layer("InnerProduct", "fc_out", top, "fc_out", num_output=1))
    specs.append(layer("BinaryCrossEntropyLoss", "loss", ["fc_out", "label"], "loss"))
    return specs
