"""``ExactNormalize``: NVTabular's ``Normalize`` op with the project's exactly summed statistics
(``moments``), so the NVTabular engine writes the same bits as the pyarrow engine. Imports NVTabular;
the engines import it only when the NVTabular engine fits with Normalize."""

from __future__ import annotations

import dask
import numpy as np
from merlin.dag import DataFormats, Supports
from nvtabular import ops

from .moments import ExactMoments, normalize, partition_moments


class ExactNormalize(ops.Normalize):
    """``Normalize`` (a StatOperator in the workflow, after FillMissing/Clip/LogOp) whose fit sums each
    dask partition exactly and combines the partitions exactly (NVTabular's own sums float32 partitions
    in float64 along a reduction tree, so its rounding depends on the partitioning), and whose transform
    computes ``(x - mean) / std`` in float64 and rounds once to float32 (``moments.normalize``). Same
    rule as Normalize otherwise: sample std (ddof=1), ``x - mean`` where std is not > 0."""

    def __init__(self):
        super().__init__(out_dtype=np.float32)

    def fit(self, col_selector, ddf):
        self._names = list(col_selector.names)
        parts = [dask.delayed(partition_moments)(part, self._names) for part in ddf[self._names].to_delayed()]
        return dask.delayed(ExactMoments.combine)(parts, len(self._names))  # one small object per partition

    def fit_finalize(self, dask_stats):
        means, stds = dask_stats.finalize()
        for j, name in enumerate(self._names):
            self.means[name], self.stds[name] = float(means[j]), float(stds[j])

    @property
    def supports(self):
        return Supports.CPU_DATAFRAME  # the engine runs NVTabular in CPU mode (pandas partitions)

    @property
    def supported_formats(self):
        return DataFormats.PANDAS_DATAFRAME

    def transform(self, col_selector, df):
        new_df = type(df)()
        for name in col_selector.names:
            new_df[name] = type(df[name])(normalize(df[name].to_numpy(), self.means[name], self.stds[name]),
                                          index=df.index)
        return new_df
