"""Errors and warnings that name the JSON path of the offending key, and the location object that builds them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import NoReturn


class ConfigError(ValueError):
    """A configuration that HugeCTR would reject (or that we reject on purpose, see the package docstring).

    The message starts with the JSON path, then the layer it belongs to, then what is wrong:
    ``layers[5].fc_param.num_output (InnerProduct "fc1"): must be a positive integer, got "1024"``.
    ``path`` and ``file`` are also available as attributes.
    """

    def __init__(self, message: str, *, path: str = "", file: str | None = None):
        super().__init__(message)
        self.path = path
        self.file = file


class ConfigWarning(UserWarning):
    """A key that HugeCTR ignores (unknown, or not used in this context), or a value it silently adjusts."""


def _format(path: str, label: str | None, detail: str, file: str | None) -> str:
    where = path + (f" ({label})" if label else "")
    text = f"{where}: {detail}" if where else detail
    return f"{text} (in {file})" if file else text


@dataclass(frozen=True)
class Loc:
    """Where we are in the JSON document: path, the layer being parsed (for messages) and the file."""

    path: str = ""
    label: str | None = None
    file: str | None = None

    def child(self, part: str | int) -> Loc:
        """``child("top")`` → ``….top``, ``child(3)`` → ``…[3]``; a part starting with ``[`` is appended."""
        if isinstance(part, int):
            part = f"[{part}]"
        if not part:
            return self
        sep = "" if part.startswith("[") or not self.path else "."
        return Loc(self.path + sep + part, self.label, self.file)

    def labelled(self, label: str) -> Loc:
        return Loc(self.path, label, self.file)

    def fail(self, detail: str) -> NoReturn:
        raise ConfigError(_format(self.path, self.label, detail, self.file), path=self.path, file=self.file)

    def warn(self, detail: str) -> None:
        warnings.warn(ConfigWarning(_format(self.path, self.label, detail, self.file)), stacklevel=2)
