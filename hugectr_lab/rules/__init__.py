"""HugeCTR's rules that more than one layer of the package states: the key types and the hash
table's empty-key marker (``keys``), and the optimizer update formulas (``optimizers``).

This is the bottom of the package: it imports NumPy and the standard library only, so the NumPy
references (embedding/, optim/), the CUDA wrappers (backend/cuda/) and the readers (data/) can all
take a rule from here without importing each other.
"""
