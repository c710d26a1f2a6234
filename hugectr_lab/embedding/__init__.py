"""Sparse embeddings: hash tables, the three HugeCTR embedding types, combiners, sparse optimizers
and the sparse model / optimizer-state files."""

from .base import EMBEDDING_TYPES, SparseEmbedding
from .distributed import DistributedSlotSparseEmbeddingHash
from .files import (SparseModel, SparseModelFileError, SparseOptimizerState, load_sparse_model,
                    load_sparse_optimizer_state, read_sparse_model_dir, read_sparse_model_file,
                    read_sparse_optimizer_state, save_sparse_model, save_sparse_optimizer_state,
                    write_sparse_model_dir, write_sparse_model_file, write_sparse_optimizer_state)
from .hash_table import EmbeddingOverflowError, HashTable, Lookup, VocabularyOverflowWarning
from .localized import LocalizedSlotSparseEmbeddingHash
from .one_hot import LocalizedSlotSparseEmbeddingOneHot
from .sparse_optimizers import (SPARSE_OPTIMIZERS, SparseAdaGrad, SparseAdam, SparseMomentumSGD, SparseNesterov,
                                SparseOptimizer, SparseSGD)

__all__ = [
    "EMBEDDING_TYPES", "SparseEmbedding", "DistributedSlotSparseEmbeddingHash", "LocalizedSlotSparseEmbeddingHash",
    "LocalizedSlotSparseEmbeddingOneHot", "EmbeddingOverflowError", "VocabularyOverflowWarning", "HashTable", "Lookup", "SPARSE_OPTIMIZERS",
    "SparseOptimizer", "SparseSGD", "SparseMomentumSGD", "SparseNesterov", "SparseAdam", "SparseAdaGrad",
    "SparseModel", "SparseModelFileError", "SparseOptimizerState", "read_sparse_model_file", "write_sparse_model_file",
    "read_sparse_model_dir", "write_sparse_model_dir", "read_sparse_optimizer_state", "write_sparse_optimizer_state",
    "save_sparse_model", "load_sparse_model", "save_sparse_optimizer_state", "load_sparse_optimizer_state",
]
