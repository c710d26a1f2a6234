"""Which template instantiations of which ``kernels/*.cu`` file the wrappers launch (no CuPy needed).

One list per source file is the single place that names instantiations: the loader compiles a file
with exactly these ``name_expressions``, and the CPU compile check (tests/kernels) builds the same
instantiations with ``nvcc``. ``hctr_half`` is the binary16 storage type of ``hctr_common.cuh``.
"""

from __future__ import annotations

import numpy as np

DTYPES = ("float", "hctr_half")  # float32 and float16 arrays
KEYS = ("unsigned int", "long long")  # uint32 (I32) and int64 (I64) keys
CTYPE = {np.dtype(np.float32): "float", np.dtype(np.float16): "hctr_half",
         np.dtype(np.uint32): "unsigned int", np.dtype(np.int64): "long long"}

# Floats per table access of the combine kernel (embedding.cu): 16, 8 or 4 bytes.
COMBINE_WIDTHS = ("4", "2", "1")
# Columns per thread of the FC epilogue kernels (dense.cu) and of the TF32 split (tf32_split.cu).
EPILOGUE_WIDTHS = ("4", "1")
# Update rules of optimizer_rules.cuh: the sparse updates take all, the dense update the local ones;
# the Global ones also have an all-rows pass.
LOCAL_RULES = ("Sgd", "Momentum", "Nesterov", "Adam", "AdaGrad")
GLOBAL_RULES = ("MomentumGlobal", "NesterovGlobal", "AdamGlobal")
# Insertion policies of embedding_cache.cu, by the inference cache's policy names.
CACHE_POLICY = {"lru": "hctr::Lru", "tinylfu": "hctr::TinyLfu"}
CACHE_POLICIES = tuple(CACHE_POLICY.values())


def templated(name, *type_lists):
    """``name<a, b>`` for every combination of the given type lists, in order."""
    combos = [()]
    for types in type_lists:
        combos = [c + (t,) for c in combos for t in types]
    return tuple(f"{name}<{', '.join(c)}>" for c in combos)


def _rules(names):
    return tuple(f"hctr::{n}" for n in names)


def _row_updates(name):
    """``name<rule, state type>`` of the sparse row updates; SGD keeps no state, so only its float name runs."""
    return tuple(e for e in templated(name, _rules(LOCAL_RULES + GLOBAL_RULES), DTYPES)
                 if e != f"{name}<hctr::Sgd, hctr_half>")


SOURCES = {
    "embedding.cu": (templated("hctr_embedding_combine_fwd", DTYPES, COMBINE_WIDTHS)
                     + templated("hctr_embedding_reduce_grad_chunks", DTYPES) + ("hctr_embedding_reduce_grad_bwd",)
                     + ("hctr_radix_hist", "hctr_radix_scatter")
                     + templated("hctr_scatter_rows", DTYPES + ("long long",)) + ("hctr_csr_row_ids",)),
    "sparse_update.cu": (_row_updates("hctr_sparse_update_rows") + _row_updates("hctr_sparse_reduce_update_rows")
                         + templated("hctr_sparse_update_all", _rules(GLOBAL_RULES), DTYPES)
                         + templated("hctr_sparse_sgd_atomic_update", DTYPES, ("1", "4"))
                         + templated("hctr_sparse_adam_lazy_update", DTYPES)),
    "dense_update.cu": templated("hctr_dense_update", _rules(LOCAL_RULES), DTYPES),
    "hash_table.cu": (templated("hctr_hash_table_lookup", KEYS) + templated("hctr_hash_table_probe", KEYS)
                      + templated("hctr_hash_table_insert", KEYS)
                      + ("hctr_hash_table_first", "hctr_hash_table_resolve", "hctr_hash_table_unique")),
    "dense.cu": (templated("hctr_bias_act_fwd", DTYPES, EPILOGUE_WIDTHS)
                 + templated("hctr_bias_act_bwd", DTYPES, EPILOGUE_WIDTHS) + templated("hctr_dropout_fwd", DTYPES)
                 + templated("hctr_sigmoid", DTYPES)),
    "losses.cu": templated("hctr_bce_loss_fwd", DTYPES) + templated("hctr_bce_loss_bwd", DTYPES),
    "multicross.cu": tuple(e for k in ("hctr_multicross_fwd", "hctr_multicross_bwd", "hctr_multicross_bwd_sums",
                                       "hctr_multicross_bwd_finish") for e in templated(k, DTYPES)),
    "concat.cu": templated("hctr_concat_columns", DTYPES),
    "gemv.cu": tuple(e for k in ("hctr_gemv_rows", "hctr_gemv_cols", "hctr_column_sums", "hctr_outer")
                     for e in templated(k, DTYPES)),
    "tf32_split.cu": templated("hctr_tf32_split", EPILOGUE_WIDTHS),   # float only
    "numerics.cu": templated("hctr_all_finite", DTYPES),
    "write_table.cu": ("hctr_write_table",),
    "fm_order2.cu": templated("hctr_fm_order2_fwd", DTYPES) + templated("hctr_fm_order2_bwd", DTYPES),
    "interaction.cu": (tuple(e for k in ("hctr_interaction_pack", "hctr_interaction_stack", "hctr_interaction_unpack")
                             for e in templated(k, DTYPES))
                       + ("hctr_interaction_fwd_mma", "hctr_interaction_bwd_mma")),   # float16 only
    # Inference embedding cache and the predict graph's lookup (wrappers: hugectr_lab/inference/cuda_cache.py).
    "embedding_cache.cu": tuple(e for k in ("hctr_embedding_cache_set_index", "hctr_embedding_cache_query",
                                            "hctr_embedding_cache_sketch_update", "hctr_embedding_cache_frequency",
                                            "hctr_infer_begin", "hctr_infer_dedupe", "hctr_infer_lookup",
                                            "hctr_infer_link")
                                for e in templated(k, KEYS))
                          + templated("hctr_embedding_cache_insert", KEYS, CACHE_POLICIES)
                          + templated("hctr_infer_insert", KEYS, CACHE_POLICIES)
                          + ("hctr_embedding_cache_sketch_halve",),
}

# Compiler options shared by NVRTC (the loader) and nvcc (the compile check). No FMA contraction:
# a*b + c rounds twice, as NumPy does, so the kernels reproduce their references' float32 results.
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
NVCC_OPTIONS = ("-std=c++17", "-fmad=false")


def instantiation_unit(file_name):
    """C++ source that includes ``file_name`` and instantiates every name expression listed for it
    (taking a kernel's address makes the compiler emit it), for an offline ``nvcc -cubin`` check."""
    lines = [f'#include "{file_name}"', "", "extern void* const hctr_instantiations[];",
             "void* const hctr_instantiations[] = {"]
    lines += [f"    (void*)&{expr}," for expr in SOURCES[file_name]]
    lines += ["};", ""]
    return "\n".join(lines)
