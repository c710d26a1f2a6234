"""Data: HugeCTR's Norm, Raw and Parquet formats, file lists and keyset files, the DataReader, and a
synthetic generator.

Array-level API (host NumPy arrays; letters as in the package docstring, N samples):

* ``Samples(labels (N, L) float32, dense (N, D) float32, sparse)`` with one ``CSR`` per sparse input;
* ``CSR(row_offsets (N*S+1,) int64, keys (K,) uint32|int64)``, row = sample * S + slot;
* ``Batch``: a ``Samples`` of B rows plus ``size``, the number of real samples (the rest is padding).

Key types are named as in HugeCTR's ``input_key_type``: "I32" (uint32 keys) and "I64" (int64 keys).
Byte layouts are described in docs/formats.md.
"""

from ..rules.keys import KEY_DTYPES, key_type_name
from .batch import CSR, Batch, Samples, as_keys, key_dtype
from .errors import DataError, DataWarning, NotInitializedError
from .file_list import read_file_list, resolve_data_path, resolve_file_list, write_file_list
from .generator import (DISTRIBUTIONS, DatasetSummary, PlantedModel, data_layer_options, generate_dataset,
                        generate_for_config)
from .keyset import read_keyset, write_keyset
from .norm import (NormHeader, NormLayout, check_mode, encode_norm, iter_norm_file, read_norm_file, read_norm_header,
                   write_norm_file)
from .norm_parse import DroppedSample
from .parquet import (ParquetDatasetWriter, ParquetFileReader, ParquetLayout, ParquetMetadata, iter_parquet_file,
                      parquet_table, read_parquet_file, read_parquet_metadata, write_parquet_dataset,
                      write_parquet_metadata)
from .raw import (RawBatches, RawFile, RawLayout, RawRecords, encode_raw, raw_num_records, read_raw_file,
                  read_raw_records, write_raw_file)
from .reader import FORMATS, DataReader, DataReader32, DataReader64

__all__ = [
    "CSR", "KEY_DTYPES", "Batch", "Samples", "as_keys", "key_dtype", "key_type_name",
    "DataError", "DataWarning", "NotInitializedError",
    "read_file_list", "resolve_data_path", "resolve_file_list", "write_file_list",
    "read_keyset", "write_keyset",
    "NormHeader", "NormLayout", "check_mode", "encode_norm", "iter_norm_file", "read_norm_file", "read_norm_header",
    "write_norm_file", "DroppedSample",
    "ParquetDatasetWriter", "ParquetFileReader", "ParquetLayout", "ParquetMetadata", "iter_parquet_file",
    "parquet_table", "read_parquet_file", "read_parquet_metadata", "write_parquet_dataset", "write_parquet_metadata",
    "RawBatches", "RawFile", "RawLayout", "RawRecords", "encode_raw", "raw_num_records", "read_raw_file",
    "read_raw_records", "write_raw_file",
    "FORMATS", "DataReader", "DataReader32", "DataReader64",
    "DISTRIBUTIONS", "DatasetSummary", "PlantedModel", "data_layer_options", "generate_dataset",
    "generate_for_config",
]
