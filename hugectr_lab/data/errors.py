"""Errors and warnings of the data package. Messages start with the file and byte offset."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data or a data file that disagrees with the reader's configuration.

    ``path`` and ``offset`` (byte offset in that file, None if not about one place) are kept as
    attributes; the message reads ``"<path>: byte <offset>: <what>"``.
    """

    def __init__(self, path, offset, what):
        self.path = str(path)
        self.offset = offset
        self.what = what
        where = self.path if offset is None else f"{self.path}: byte {offset}"
        super().__init__(f"{where}: {what}")


class NotInitializedError(RuntimeError):
    """A reader was asked to rewind or read without ever having been given a source."""


class DataWarning(UserWarning):
    """Data was skipped (e.g. a sample with a bad checksum was dropped); reading went on."""
