"""Atomic file writes, and snapshots: several files that are committed together under one manifest.

A single file (``atomic_write``) or directory (``write_dir_atomic``) is written under a temporary
hidden name next to its target (``.<name>.<token>.tmp``), fsynced, then renamed over the target -- a
reader never sees half a file. A directory replaces an existing one with one atomic exchange
(Linux ``renameat2(RENAME_EXCHANGE)``), so the old directory is never missing. New files and
directories get the usual permissions: 0666 / 0777 less the process umask.

A model snapshot is several files. Inside ``with Snapshot(manifest_path, step=...)`` every
``atomic_write`` / ``write_dir_atomic`` of the thread leaves its temporary in place; when the block
ends without error:

1. the manifest is written as *pending* -- step, and per file its final and temporary names, size and
   CRC-32 (per member file for directories) -- and fsynced: from here on the new snapshot is complete
   on disk, under the temporary names;
2. the temporaries are renamed over their targets (directories exchanged);
3. the manifest is rewritten as *complete* and the replaced directories are removed.

A crash before 1 leaves the old files untouched plus temporaries, which the next ``Snapshot`` in that
directory deletes. A crash after 1 is rolled forward (the renames are finished) by the next
``Snapshot`` there or by the first loader that reads a listed file (``check_snapshot_file``), so the
files are always the whole old snapshot or the whole new one. An error inside the block (a full disk)
removes every temporary before it propagates.

Loaders call ``check_snapshot_file(path)``: when a manifest in the file's directory lists it, its size
and CRC-32 must match, or ``SnapshotError`` says which save it belongs to. A file no manifest lists
(written by HugeCTR, or before manifests existed) is accepted as it is.

``fault_hook``, when set, is called as ``fault_hook(operation, path)`` before every write, fsync,
rename and removal made here -- the crash tests kill or fail the process at the k-th call.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import glob
import json
import os
import secrets
import shutil
import threading
import time
import zlib

import numpy as np

MANIFEST_FORMAT = "hugectr-lab snapshot manifest"
MANIFEST_SUFFIX = ".manifest.json"
fault_hook = None
_current = threading.local()   # .snapshot: the Snapshot this thread is writing, if any


class SnapshotError(ValueError):
    """A model file that does not match the snapshot manifest listing it (an interrupted or mixed save)."""


def _fault(operation, path):
    if fault_hook is not None:
        fault_hook(operation, os.fspath(path))


@contextlib.contextmanager
def naming_os_errors(path):
    """Give an OSError raised inside the block that names no file (a write's ENOSPC "No space left on
    device", EFBIG, EIO) ``path`` as its file name, so the message says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e
        raise


def _temp_name(path):
    head, name = os.path.split(os.fspath(path))
    return os.path.join(head, f".{name}.{secrets.token_hex(4)}.tmp")


def _fsync_dir(directory):
    with naming_os_errors(directory or "."):
        _fault("fsync", directory)
        fd = os.open(directory or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _require_dir(path):
    directory = os.path.dirname(os.fspath(path)) or "."
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot write {path}: directory {directory} does not exist")
    return directory


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename (inside a
    ``Snapshot``: when the snapshot commits).

    On error the temporary file is removed and any existing ``path`` is left as it was.
    """
    directory = _require_dir(path)
    tmp = _temp_name(path)
    _fault("create", tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies
    try:
        with naming_os_errors(path), os.fdopen(fd, mode) as f:
            _fault("write", tmp)
            yield f
            f.flush()
            _fault("fsync", tmp)
            os.fsync(f.fileno())
        _install(path, tmp, "file", directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes or a NumPy array's raw buffer) to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data if isinstance(data, (bytes, bytearray, memoryview)) else memoryview(data).cast("B"))


def write_dir_atomic(path, files):
    """Write ``files`` (name -> array or bytes) into a temporary sibling directory, then swap it in."""
    path = os.fspath(path).rstrip(os.sep)
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path}: exists and is not a directory")
    directory = _require_dir(path)
    tmp = _temp_name(path)
    _fault("create", tmp)
    os.mkdir(tmp, 0o777)
    try:
        for name, content in files.items():
            file = os.path.join(tmp, name)
            with naming_os_errors(os.path.join(path, name)), open(file, "wb") as f:
                _fault("write", file)
                f.write(content if isinstance(content, bytes) else np.ascontiguousarray(content).tobytes())
                f.flush()
                _fault("fsync", file)
                os.fsync(f.fileno())
        _fsync_dir(tmp)
        _install(path, tmp, "dir", directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _install(path, tmp, kind, directory):
    snapshot = getattr(_current, "snapshot", None)
    if snapshot is not None:
        snapshot._add(os.fspath(path), tmp, kind)
        return
    _move_into_place(os.fspath(path), tmp, kind)
    _fsync_dir(directory)
    if kind == "dir" and os.path.exists(tmp):   # the exchanged-out old directory
        _remove(tmp)


# ---- renames --------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.renameat2
    except (OSError, AttributeError):
        return None


_renameat2 = _libc_renameat2()


def _exchange(a, b):
    """Swap two existing paths atomically; False where the system cannot."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def _move_into_place(path, tmp, kind):
    """Rename ``tmp`` over ``path``. An existing directory is exchanged with ``tmp`` (it is then at
    ``tmp``, for the caller to remove); without exchange support it is first moved aside."""
    _fault("rename", path)
    if kind == "dir" and os.path.isdir(path):
        if _exchange(tmp, path):
            return
        aside = _temp_name(path)
        os.rename(path, aside)
        os.rename(tmp, path)
        os.rename(aside, tmp)
        return
    os.replace(tmp, path)


def _remove(path):
    _fault("remove", path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


# ---- snapshots ------------------------------------------------------------------------------------

def _crc32(file):
    crc = 0
    with open(file, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return crc


def _describe(path):
    """Size and CRC-32 of a file, or of every file of a directory."""
    if os.path.isdir(path):
        return {"files": {name: {"size": os.path.getsize(os.path.join(path, name)),
                                 "crc32": _crc32(os.path.join(path, name))}
                          for name in sorted(os.listdir(path))}}
    return {"size": os.path.getsize(path), "crc32": _crc32(path)}


def _write_manifest(path, manifest):
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with naming_os_errors(path), os.fdopen(fd, "w") as f:
            _fault("write", tmp)
            json.dump(manifest, f, indent=1)
            f.flush()
            _fault("fsync", tmp)
            os.fsync(f.fileno())
        _fault("rename", path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(os.path.dirname(path))


class Snapshot:
    """``with Snapshot(manifest_path, step=...):`` -- the files written inside the block by this thread
    (``atomic_write``, ``write_dir_atomic`` and everything built on them) are committed together, with
    ``manifest_path`` written last (see the module docstring). ``info``: extra JSON-ready fields kept
    in the manifest. ``files`` lists the committed paths afterwards."""

    def __init__(self, manifest_path, *, step=None, info=None):
        self.path = os.fspath(manifest_path)
        if not self.path.endswith(MANIFEST_SUFFIX):
            raise ValueError(f"a snapshot manifest's name ends in {MANIFEST_SUFFIX}, got {self.path}")
        self.step = step
        self.info = dict(info or {})
        self.files = []
        self._entries = []
        self._manifest = None

    def __enter__(self):
        if getattr(_current, "snapshot", None) is not None:
            raise RuntimeError(f"snapshot {self.path} started inside snapshot {_current.snapshot.path}")
        clean_directory(_require_dir(self.path))
        _current.snapshot = self
        return self

    def _add(self, path, tmp, kind):
        if any(e[0] == path for e in self._entries):
            raise ValueError(f"snapshot {self.path}: {path} written twice")
        self._entries.append((path, tmp, kind))

    def __exit__(self, exc_type, exc, tb):
        _current.snapshot = None
        if exc_type is not None:
            for _, tmp, _ in self._entries:
                _remove(tmp)
            return False
        try:
            self._commit()
        except BaseException:
            if self._manifest is not None and self._manifest_written():
                with contextlib.suppress(OSError):   # committed: finish the renames (they need no space)
                    _roll_forward(self.path, self._manifest)
            else:
                for _, tmp, _ in self._entries:   # not committed: the old files are all still there
                    _remove(tmp)
            raise
        return False

    def _commit(self):
        if not self._entries:
            return
        base = os.path.dirname(os.path.abspath(self.path))
        manifest = {"format": MANIFEST_FORMAT, "version": 1, "state": "pending", "step": self.step,
                    "time": time.time(), **self.info, "files": []}
        for path, tmp, kind in self._entries:
            manifest["files"].append({"name": os.path.relpath(os.path.abspath(path), base),
                                      "temp": os.path.relpath(os.path.abspath(tmp), base), "kind": kind,
                                      **_describe(tmp)})
        for directory in {os.path.dirname(tmp) for _, tmp, _ in self._entries}:
            _fsync_dir(directory)
        self._manifest = manifest
        _write_manifest(self.path, manifest)   # the commit point: from here on rolled forward, never back
        _roll_forward(self.path, manifest, fresh=True)
        self.files = [path for path, _, _ in self._entries]

    def _manifest_written(self):
        """Whether our pending manifest reached its final name (the save is committed)."""
        try:
            return _read_manifest(self.path) == self._manifest
        except (OSError, SnapshotError):
            return False


def _read_manifest(path):
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read())
    except ValueError as err:
        raise SnapshotError(f"{path}: snapshot manifest is not valid JSON ({err}); delete it to load the files "
                            "it lists without checks") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise SnapshotError(f"{path}: not a {MANIFEST_FORMAT!r} file")
    return manifest


def _roll_forward(path, manifest, *, fresh=False):
    """Finish a pending manifest's renames (idempotent), then mark it complete and drop old directories.
    ``fresh``: the manifest was just written from the temporaries as they are (``Snapshot._commit``), so
    every one is still to be renamed and is not read again for its CRC-32. Returns the manifest as now
    written (state "complete")."""
    base = os.path.dirname(os.path.abspath(path))
    leftovers = []
    for entry in manifest["files"]:
        final, tmp = os.path.join(base, entry["name"]), os.path.join(base, entry["temp"])
        if os.path.exists(tmp) and (fresh or _matches(tmp, entry)):   # not renamed yet
            _move_into_place(final, tmp, entry["kind"])
            if os.path.exists(tmp):
                leftovers.append(tmp)
        elif os.path.exists(tmp):                          # the exchanged-out old directory
            leftovers.append(tmp)
    for directory in {os.path.dirname(os.path.join(base, e["name"])) for e in manifest["files"]}:
        _fsync_dir(directory)
    manifest = {**manifest, "state": "complete"}
    _write_manifest(path, manifest)
    for tmp in leftovers:
        _remove(tmp)
    return manifest


def _matches(path, entry):
    try:
        described = _describe(path)
    except OSError:
        return False
    return all(described.get(k) == entry.get(k) for k in ("size", "crc32", "files"))


def manifests(directory):
    """The snapshot manifests in ``directory`` (paths, sorted)."""
    return sorted(glob.glob(os.path.join(glob.escape(directory or "."), "*" + MANIFEST_SUFFIX)))


def _settled_manifests(directory):
    """``(path, manifest)`` of each readable manifest in ``directory``, pending ones rolled forward first;
    an unreadable manifest is passed over (loading the files it lists reports it)."""
    for path in manifests(directory):
        try:
            manifest = _read_manifest(path)
        except SnapshotError:
            continue
        if manifest.get("state") == "pending":
            manifest = _roll_forward(path, manifest)
        yield path, manifest


def clean_directory(directory):
    """Roll pending snapshots of ``directory`` forward and delete the temporaries failed saves left
    (hidden ``.*.tmp`` entries). Run by every ``Snapshot`` before it writes; assumes one writer per
    directory at a time."""
    for _ in _settled_manifests(directory):   # iterating rolls the pending ones forward
        pass
    for name in os.listdir(directory or "."):
        if name.startswith(".") and name.endswith(".tmp"):
            _remove(os.path.join(directory, name))


def check_snapshot_file(path):
    """Check a model file (or directory) before loading it: the newest manifest in its directory that
    lists it (rolled forward first if pending) must give its size and CRC-32, else ``SnapshotError``.
    A file no manifest lists is accepted (HugeCTR writes none)."""
    path = os.fspath(path)
    target = os.path.abspath(path)
    base = os.path.dirname(target)
    listing = []
    for manifest_path in manifests(base):
        manifest = _read_manifest(manifest_path)
        for entry in manifest.get("files", ()):
            if os.path.normpath(os.path.join(base, entry["name"])) == target:
                listing.append((os.path.getmtime(manifest_path), manifest_path, manifest, entry))
    if not listing:
        return None
    _, manifest_path, manifest, entry = max(listing, key=lambda item: item[:2])
    if manifest.get("state") == "pending":
        with contextlib.suppress(OSError):   # a read-only or full disk: the check below still decides
            _roll_forward(manifest_path, manifest)
    if not _matches(path, entry):
        raise SnapshotError(
            f"{path}: does not match its snapshot manifest {manifest_path} (step {manifest.get('step')}): the file "
            "was changed after that save or comes from another one (a mixed set); load the files of one complete "
            "snapshot, or delete the manifest to load it without checks")
    return manifest_path


def complete_snapshots(directory):
    """``[(step, manifest path), ...]`` of the complete snapshots in ``directory`` whose files all match,
    oldest step first -- where to resume after a crash."""
    found = []
    for path, manifest in _settled_manifests(directory):
        base = os.path.dirname(os.path.abspath(path))
        if all(_matches(os.path.join(base, e["name"]), e) for e in manifest["files"]):
            found.append((manifest.get("step"), path))
    return sorted(found, key=lambda item: (item[0] is None, item[0] or 0, item[1]))
