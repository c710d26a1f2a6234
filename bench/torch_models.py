"""The same graphs in plain PyTorch, as a practitioner writes them: one ``nn.EmbeddingBag`` over all
slots (keys already offset per slot, one bag per (sample, slot)), sparse gradients, ``torch.amp``
autocast + GradScaler for fp16, TF32 through ``torch.backends``; eager, or with everything after the
lookup under ``torch.compile`` (``TorchStep(compile_mode=...)``).

Each model is ``emb`` (the lookup, always eager: SparseAdam needs its sparse gradient, and torch 2.13's
Inductor fails on DCN's backward with one -- "Cannot access storage of SparseTensorImpl") followed by
``head(rows, dense)``: rows (B*S, E) -> logits (B, 1)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def mlp(sizes, last_relu=True):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DCN(nn.Module):
    """Embedding (B, 26, 16) ++ dense -> x0 (B, 429); 6 cross layers; MLP 1024-1024 with dropout 0.5."""

    def __init__(self, num_keys, vec=16, slots=26, dense=13, cross=6, hidden=1024):
        super().__init__()
        self.slots, self.vec = slots, vec
        self.emb = nn.EmbeddingBag(num_keys, vec, mode="sum", sparse=True)
        nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        width = slots * vec + dense
        self.cross_w = nn.Parameter(torch.randn(cross, width) * (3.0 / width) ** 0.5)
        self.cross_b = nn.Parameter(torch.zeros(cross, width))
        self.deep = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden),
                                  nn.ReLU(), nn.Dropout(0.5))
        self.out = nn.Linear(hidden + width, 1)

    def forward(self, keys, bag_offsets, dense):
        return self.head(self.emb(keys, bag_offsets), dense)

    def head(self, rows, dense):
        x0 = torch.cat([rows.view(dense.shape[0], -1), dense], dim=1)                # (B, 429)
        x = x0
        for w, b in zip(self.cross_w, self.cross_b):
            x = x0 * (x @ w).unsqueeze(1) + x + b
        return self.out(torch.cat([self.deep(x0), x], dim=1))

    def optimizers(self):
        dense = [p for n, p in self.named_parameters() if not n.startswith("emb.")]
        return [torch.optim.SparseAdam([self.emb.weight], lr=1e-3), torch.optim.Adam(dense, lr=1e-3)]


class DeepFM(nn.Module):
    """Embedding (B, 26, 11): columns 0-9 are the FM vectors, column 10 the linear weight; dense (B, 13)
    times W1 (13, 10) adds 13 FM vectors, times W2 (13, 1) the dense linear term. Logit = MLP 390-400-400-
    400-1 (dropout 0.5) over the 39 FM vectors + FM second order + linear terms (the sample's graph)."""

    def __init__(self, num_keys, vec=11, slots=26, dense=13, hidden=400):
        super().__init__()
        self.slots, self.vec, self.k = slots, vec, vec - 1
        self.emb = nn.EmbeddingBag(num_keys, vec, mode="sum", sparse=True)
        nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        self.w1 = nn.Parameter(torch.empty(dense, self.k).uniform_(-(6 / (dense + dense * self.k)) ** 0.5,
                                                                   (6 / (dense + dense * self.k)) ** 0.5))
        self.w2 = nn.Parameter(torch.empty(dense, 1).uniform_(-(3 / dense) ** 0.5, (3 / dense) ** 0.5))
        width = (slots + dense) * self.k
        self.deep = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden),
                                  nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(hidden, 1))

    def forward(self, keys, bag_offsets, dense):
        return self.head(self.emb(keys, bag_offsets), dense)

    def head(self, rows, dense):
        e = rows.view(dense.shape[0], self.slots, self.vec)                          # (B, 26, 11)
        v = torch.cat([e[:, :, :self.k], dense.unsqueeze(2) * self.w1], dim=1)        # (B, 39, 10)
        s = v.sum(dim=1)
        fm = 0.5 * (s * s - (v * v).sum(dim=1)).sum(dim=1, keepdim=True)
        linear = e[:, :, self.k].sum(dim=1, keepdim=True) + dense @ self.w2
        return self.deep(v.flatten(1)) + fm + linear

    def optimizers(self):
        dense = [p for n, p in self.named_parameters() if not n.startswith("emb.")]
        return [torch.optim.SparseAdam([self.emb.weight], lr=1e-3, eps=1e-7), torch.optim.Adam(dense, lr=1e-3, eps=1e-7)]


class DLRM(nn.Module):
    """Bottom MLP 13-512-256-128, dot interaction with 26 embeddings of 128, top MLP 1024-1024-512-256-1."""

    def __init__(self, num_keys, vec=128, slots=26, dense=13):
        super().__init__()
        self.emb = nn.EmbeddingBag(num_keys, vec, mode="sum", sparse=True)
        nn.init.uniform_(self.emb.weight, -0.05, 0.05)
        n = slots + 1
        self.bottom = mlp([dense, 512, 256, vec])
        self.top = mlp([vec + n * (n - 1) // 2 + 1, 1024, 1024, 512, 256, 1], last_relu=False)
        rows, cols = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("rows", rows)
        self.register_buffer("cols", cols)
        self.slots = slots

    def forward(self, keys, bag_offsets, dense):
        return self.head(self.emb(keys, bag_offsets), dense)

    def head(self, rows, dense):
        x = self.bottom(dense)                                                       # (B, 128)
        z = torch.cat([x.unsqueeze(1), rows.view(dense.shape[0], self.slots, -1).to(x.dtype)], dim=1)  # (B, 27, 128)
        pairs = torch.bmm(z, z.transpose(1, 2))[:, self.rows, self.cols]
        return self.top(torch.cat([x, pairs, torch.zeros_like(x[:, :1])], dim=1))

    def optimizers(self):
        return [torch.optim.SGD(self.parameters(), lr=0.5)]


MODELS = {"dcn": DCN, "deepfm": DeepFM, "dlrm": DLRM}


class TorchStep:
    """Model + optimizers + (fp16) GradScaler; ``step(batch)`` is one training iteration.

    ``compile_mode`` (a ``torch.compile`` mode, e.g. ``"max-autotune"``; None: eager) compiles
    ``head_loss`` -- the model after the lookup and the loss, forward and backward; the lookup, its
    sparse backward and the optimizers run eagerly in both cases, so eager and compiled share ``step``.
    Compilation happens in the first ``step``.

    ``compact=True`` sizes the table by the distinct keys of ``work.batches`` and renumbers the keys
    0..U-1 beforehand (the CPU benchmark: a 34 M-row table and its dense SparseAdam state would not
    fit beside hugectr-lab's; the renumbering is not timed, the Session's hash table is)."""

    def __init__(self, work, device="cuda", compact=False, compile_mode=None):
        torch.backends.cuda.matmul.allow_tf32 = work.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = work.precision == "tf32"
        keys = [b.keys.astype("int64") for b in work.batches]
        num_keys = work.num_keys
        if compact:
            distinct, inverse = np.unique(np.concatenate(keys), return_inverse=True)
            keys, num_keys = np.split(inverse, len(keys)), distinct.size
        with torch.device(device):   # parameters are created (and initialised) on the device
            self.model = MODELS[work.model](num_keys, work.vec)
        self.optimizers = self.model.optimizers()
        self.fp16 = work.precision == "fp16"
        self.device_type = torch.device(device).type
        self.scaler = torch.amp.GradScaler(self.device_type, init_scale=1024.0, enabled=self.fp16)
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.compile_mode = compile_mode
        self.head_loss = self._head_loss if compile_mode is None else torch.compile(self._head_loss, mode=compile_mode)
        rows = work.batch * len(work.cardinalities)
        offsets = torch.arange(rows, device=device)
        self.batches = [(torch.as_tensor(k, device=device), offsets,
                         torch.as_tensor(b.dense, device=device), torch.as_tensor(b.labels, device=device))
                        for k, b in zip(keys, work.batches)]

    def _head_loss(self, rows, dense, labels):
        """rows (B*S, E), dense (B, 13), labels (B, 1) -> the mean BCE loss, a 0-d float32 tensor."""
        return self.loss_fn(self.model.head(rows, dense).float(), labels)

    def step(self, batch):
        keys, offsets, dense, labels = batch
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        if self.compile_mode is not None:
            # A new iteration for CUDA-graph modes: the previous step's graph outputs may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device_type, dtype=torch.float16, enabled=self.fp16):
            loss = self.head_loss(self.model.emb(keys, offsets), dense, labels)
        self.scaler.scale(loss).backward()
        for opt in self.optimizers:
            self.scaler.step(opt)
        self.scaler.update()
        return loss
