"""hugectr-lab: HugeCTR v3.0's Python interface, re-implemented in Python.

Shape letters used in comments throughout the package (``# (B, S, E)``):

    B  global batch size (``batchsize`` / ``batchsize_eval``)
    G  number of logical devices (GPUs) over all processes
    b  per-device batch, B // G
    S  slots of one sparse input (``slot_num``)
    E  embedding vector size (``embedding_vec_size``)
    K  keys in a CSR batch (nnz)
    D  a dense feature width
    L  label width (``label_dim``)
    V  table rows (``max_vocabulary_size_per_gpu``)
"""

__version__ = "0.1.0"
