"""HugeCTR's tensor rules: a bottom must already exist, each tensor feeds at most one layer, no top is defined twice."""

from __future__ import annotations

from .errors import Loc


class TensorRegistry:
    """Who defined and who consumed each tensor name so far (``owner`` is a layer path like ``layers[3]``)."""

    def __init__(self):
        self._defined_by: dict[str, str] = {}
        self._consumed_by: dict[str, str] = {}
        self._sparse: set[str] = set()

    def define(self, name: str, loc: Loc, owner: str, *, sparse: bool = False) -> None:
        if name in self._defined_by:
            loc.fail(f'tensor "{name}" is already defined by {self._defined_by[name]}')
        self._defined_by[name] = owner
        if sparse:
            self._sparse.add(name)

    def consume(self, name: str, loc: Loc, owner: str, *, sparse: bool = False) -> None:
        if name not in self._defined_by:
            loc.fail(f'tensor "{name}" is not defined by an earlier layer (layers are listed bottom to top)')
        if sparse and name not in self._sparse:
            loc.fail(f'"{name}" is not a sparse input of the Data layer')
        if not sparse and name in self._sparse:
            loc.fail(f'"{name}" is a sparse input; only an embedding layer can read it')
        if name in self._consumed_by:
            loc.fail(f'tensor "{name}" is already consumed by {self._consumed_by[name]}; a tensor feeds one layer '
                     "only (copy it with a Slice of overlapping ranges)")
        self._consumed_by[name] = owner
