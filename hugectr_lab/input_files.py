"""Checks for files the user names as input: say what is wrong instead of "not found" or a decode error.

A directory, a FIFO (reading one blocks until a writer comes), a device such as /dev/null (reads as
empty) or a socket is never a config, file list or data file; binary bytes are never a text file.
"""

from __future__ import annotations

import os
import stat

SPECIAL_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def input_problem(path) -> str | None:
    """Why ``path`` cannot be read as a regular input file ("not found", "is a directory, not a file",
    ...), or None when it is a regular file (or a link to one)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as e:  # permission denied on a parent, a name too long, a link loop
        return e.strerror.lower() if e.strerror else str(e)
    except ValueError:  # os.stat refuses a name with a NUL byte
        return "is not a valid path (it holds a NUL byte)"
    for test, kind in SPECIAL_KINDS:
        if test(mode):
            return f"is {kind}, not a regular file"
    return None


def located(path, offset, what) -> str:
    """``"<path>: byte <offset>: <what>"`` (``"<path>: <what>"`` when ``offset`` is None): how an error
    about an input file names its place (``DataError``'s message, ``read_text``'s callers)."""
    return f"{path}: {what}" if offset is None else f"{path}: byte {offset}: {what}"


def read_text(path, what, error):
    """The UTF-8 text of the regular file ``path``.

    ``what`` names the file's role ("file list", "JSON config"); ``error(offset, message)`` builds the
    exception to raise (``offset`` is a byte offset or None), so each caller keeps its own error type.
    """
    problem = input_problem(path)
    if problem is not None:
        raise error(None, f"{what} {problem}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(e.start, f"not UTF-8 text: a {what} is a text file, this looks binary") from None
