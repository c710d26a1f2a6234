"""The batched products of the Interaction wrappers (``layer_ops``), as ``cublas_abi.Batched`` operands.

No CuPy here: the CPU tests run these exact operands through a NumPy model of cuBLAS (tests/kernels).
Per sample s (m samples, F embedding rows emb_s (F, w), the bottom-MLP row mlp_s (w,)):

* forward: ``dots`` (m, F, ld) gets emb_s emb_sᵀ in columns 0..F-1 and emb_s mlp_s in column F;
* backward: ``d_emb`` (m, F, w) = ``sym`` (m, F, ld)[:, :, :F+1] @ ``z`` (m, F+1, w), with
  z_s = [emb_s; mlp_s] and sym_s the rows 1..F of G + Gᵀ with their columns in z's row order.

``ld`` (``scratch_ld``) pads the scratch rows to 16 bytes, so every row starts aligned.
"""

from __future__ import annotations

from .cublas_abi import Batched


def scratch_ld(fields):
    """Row stride (elements) of the (m, F, ·) scratch arrays: F + 1 columns rounded up to 8."""
    return -(-(fields + 1) // 8) * 8


def forward_products(mlp, emb, dots):
    """[(A, B, C), ...] for mlp (m, w), emb (m, F, w), dots (m, F, scratch_ld(F)), each over m samples."""
    _, fields, w = emb.shape
    ld = dots.shape[2]
    rows = Batched(emb, 0, fields, w, w, fields * w)                               # emb_s (F, w)
    return [(rows, rows._replace(trans=True), Batched(dots, 0, fields, fields, ld, fields * ld)),
            (rows, Batched(mlp, 0, 1, w, w, w, trans=True), Batched(dots, fields, fields, 1, ld, fields * ld))]


def backward_product(sym, z, d_emb):
    """(A, B, C) for sym (m, F, scratch_ld(F)), z (m, F+1, w), d_emb (m, F, w), over m samples."""
    _, fields, w = d_emb.shape
    ld = sym.shape[2]
    return (Batched(sym, 0, fields, fields + 1, ld, fields * ld), Batched(z, 0, fields + 1, w, w, (fields + 1) * w),
            Batched(d_emb, 0, fields, w, w, fields * w))
