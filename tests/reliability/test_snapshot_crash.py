"""Snapshots survive SIGKILL and a full disk at every file operation of a save (docs/reliability.md).

Each fault runs in a forked child: ``fileio.fault_hook`` kills it (SIGKILL) or raises ENOSPC at the
k-th write / fsync / rename / removal, for every k a save makes. The parent then checks what is on
disk: the snapshot's files are the complete old or the complete new ones, and resuming from the last
complete snapshot reproduces the uninterrupted loss curve exactly.
"""

import errno
import json
import os
import shutil
import signal
import traceback

import pytest

from session_helpers import dnn_config, write_config

from hugectr_lab import fileio
from hugectr_lab.config import solver_parser_helper
from hugectr_lab.fileio import SnapshotError, check_snapshot_file, complete_snapshots
from hugectr_lab.session import Session, model_file_names

B = 64
ITERATIONS, EVERY = 6, 2   # snapshots at 2, 4, 6

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def solver(step=None, prefix="ck/m"):
    files = {}
    if step is not None:
        names = model_file_names(prefix, step, 1)
        files = dict(model_file=names["dense"], dense_opt_states_file=names["dense_opt"],
                     embedding_files=names["sparse"], sparse_opt_states_file=names["sparse_opt"])
    return solver_parser_helper(seed=7, batchsize=B, batchsize_eval=B, max_eval_batches=2, **files)


def config(path="model.json"):
    return write_config(__import__("pathlib").Path(path), dnn_config(batchnorm=True))


def skip_batches(session, n):
    """Advance the training reader past ``n`` trained batches, as ``train()`` reads them."""
    reader = session.get_data_reader_train()
    for _ in range(n):
        while reader.read_a_batch().size != B:
            pass


def train_run(out, start=None, sparse_format="v3.0"):
    """Train to ITERATIONS (from the snapshot at ``start``), saving every EVERY; losses to ``out``."""
    session = Session(solver(start), config())
    session.start_data_reading()
    skip_batches(session, start or 0)
    session.iteration = start or 0
    losses = {}
    for i in range((start or 0) + 1, ITERATIONS + 1):
        session.train()
        losses[i] = session.get_current_loss()
        if i % EVERY == 0:
            session.download_params_to_files("ck/m", i, sparse_format=sparse_format)
    session.close()
    with open(out, "w") as f:
        json.dump(losses, f)


class _Fault:
    """``fault_hook`` that counts operations (of the kinds in ``ops``, all if None) and acts at the
    ``at``-th: SIGKILL, or ENOSPC as a full disk raises it from a write."""

    def __init__(self, at, action, ops=None):
        self.at, self.action, self.ops, self.count = at, action, ops, 0

    def __call__(self, operation, path):
        if self.ops is not None and operation not in self.ops:
            return
        self.count += 1
        if self.count == self.at:
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def forked(fn, *args, fault_at=None, action="kill", ops=None, count_to=None):
    """Run ``fn(*args)`` in a forked child, faulting at operation ``fault_at``; returns the wait
    status. ``count_to``: a file the child writes its operation count into."""
    pid = os.fork()
    if pid == 0:   # the child never returns into pytest
        code = 0
        try:
            hook = fileio.fault_hook = _Fault(fault_at or 0, action, ops)
            fn(*args)
            if count_to:
                with open(count_to, "w") as f:
                    f.write(str(hook.count))
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def temporaries(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".tmp"))


def read_tree(path):
    if os.path.isdir(path):
        return {n: read_tree(os.path.join(path, n)) for n in sorted(os.listdir(path))}
    with open(path, "rb") as f:
        return f.read()


def snapshot_files(step):
    names = model_file_names("ck/m", step, 1)
    return [names["dense"], names["dense_opt"], names["dense_opt"] + ".json", names["ntp"], *names["sparse"],
            *names["sparse_opt"]]


@pytest.fixture
def ckdir(workdir):
    os.mkdir("ck")
    return workdir


def test_kill_at_every_file_operation_of_training_then_resume(ckdir):
    """SIGKILL at each of the file operations of a run that saves 3 snapshots; resuming from the last
    complete snapshot gives the uninterrupted run's losses, bit for bit."""
    assert forked(train_run, "reference.json", count_to="ops") == 0
    with open("reference.json") as f:
        reference = {int(k): v for k, v in json.load(f).items()}
    ops = int(open("ops").read())
    assert ops >= 60
    killed = 0
    for k in range(1, ops + 1, 3):   # every third operation (the save tests below cover each one)
        clear("ck")
        status = forked(train_run, "killed.json", fault_at=k)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, k
        killed += 1
        done = complete_snapshots("ck")
        start = done[-1][0] if done else None
        for step, _ in done:   # every complete snapshot loads: each of its files matches
            for path in snapshot_files(step):
                check_snapshot_file(path)
        assert forked(train_run, "resumed.json", start) == 0, k
        with open("resumed.json") as f:
            resumed = {int(k): v for k, v in json.load(f).items()}
        assert resumed == {i: reference[i] for i in range((start or 0) + 1, ITERATIONS + 1)}, k
        if start == ITERATIONS:   # nothing left to train, so no save: the next one would clean up
            fileio.clean_directory("ck")
        assert temporaries("ck") == [], k   # the resumed run's first save removed the dead one's
    assert killed == (ops + 2) // 3
    print(f"training killed at {killed} of {ops} file operations; every resume reproduced the loss curve")


def save_over(step, sparse_format):
    """Train 2 more iterations after the snapshot at ``step`` and save over it (same names)."""
    session = Session(solver(step), config())
    session.start_data_reading()
    skip_batches(session, step)
    session.train()
    session.train()
    session.download_params_to_files("ck/m", step, sparse_format=sparse_format)
    session.close()


def test_kill_at_every_operation_of_a_save_over_the_same_names(ckdir, sparse_format="v3.1"):
    """Overwriting snapshot 2 in place, killed at each operation: snapshot 2 is afterwards entirely
    the old one or entirely the new one, never a mix, and loads. v3.1 sparse models are directories,
    so both kinds of swap (file rename, directory exchange) are exercised."""
    def first_save():
        session = Session(solver(), config())
        session.start_data_reading()
        session.train()
        session.train()
        session.download_params_to_files("ck/m", 2, sparse_format=sparse_format)
        session.close()

    assert forked(first_save) == 0
    old = {p: read_tree(p) for p in snapshot_files(2)}
    assert forked(save_over, 2, sparse_format, count_to="ops") == 0
    new = {p: read_tree(p) for p in snapshot_files(2)}
    assert all(old[p] != new[p] for p in ("ck/m_dense_2.model", "ck/m0_sparse_2.model"))
    ops = int(open("ops").read())
    for k in range(1, ops + 1):
        _restore(old)
        status = forked(save_over, 2, sparse_format, fault_at=k)
        assert os.WIFSIGNALED(status), k
        check_snapshot_file("ck/m_dense_2.model")   # rolls a committed save forward
        now = {p: read_tree(p) for p in snapshot_files(2)}
        assert now == old or now == new, k
    print(f"save over snapshot 2 ({sparse_format}) killed at each of {ops} operations; never mixed")


def clear(directory):
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        os.unlink(path) if os.path.isfile(path) else shutil.rmtree(path)


def _restore(files):
    """Rewrite ``files`` (path -> content) as one committed snapshot 2 (old content)."""
    clear("ck")
    with fileio.Snapshot("ck/m_2.manifest.json", step=2):
        for path, content in files.items():
            if isinstance(content, dict):
                fileio.write_dir_atomic(path, content)
            else:
                fileio.write_bytes_atomic(path, content)


def test_disk_full_at_every_write_keeps_the_old_snapshot_and_no_temporaries(ckdir):
    """ENOSPC raised at each operation of a save over snapshot 2: the save raises, snapshot 2 keeps
    its old content (or, past the commit point, the new one) and no temporary file is left."""
    def first_save():
        session = Session(solver(), config())
        session.start_data_reading()
        session.train()
        session.train()
        session.download_params_to_files("ck/m", 2)
        session.close()

    assert forked(first_save) == 0
    old = {p: read_tree(p) for p in snapshot_files(2)}
    writes = ("write", "fsync")   # where a full disk reports itself
    assert forked(save_over, 2, "v3.0", ops=writes, count_to="ops") == 0
    new = {p: read_tree(p) for p in snapshot_files(2)}
    ops = int(open("ops").read())
    for k in range(1, ops + 1):
        _restore(old)
        with open("err", "w"):
            pass

        def full_disk():
            try:
                save_over(2, "v3.0")
            except OSError as err:
                with open("err", "w") as f:
                    f.write(f"{err.errno} {err}")

        assert forked(full_disk, fault_at=k, action="enospc", ops=writes) == 0, k
        message = open("err").read()
        assert message.startswith(f"{errno.ENOSPC} ") and "ck" in message, (k, message)   # names the file or directory
        now = {p: read_tree(p) for p in snapshot_files(2)}
        assert now == old or now == new, k
        assert temporaries("ck") == [], (k, temporaries("ck"))
        for path in snapshot_files(2):
            assert check_snapshot_file(path) == os.path.abspath("ck/m_2.manifest.json"), (k, path)
    print(f"disk full at each of {ops} operations of a save: old snapshot intact, no temporaries")


def test_a_mixed_set_is_refused_and_a_hugectr_file_without_manifest_loads(ckdir):
    def saves():
        session = Session(solver(), config())
        session.start_data_reading()
        for i in (1, 2):
            session.train()
            session.download_params_to_files("ck/m", i)
        session.close()

    assert forked(saves) == 0
    # a file of snapshot 1 copied over snapshot 2's: the manifest of 2 refuses it, naming both
    with open("ck/m_dense_1.model", "rb") as src, open("ck/m_dense_2.model", "wb") as dst:
        dst.write(src.read())
    with pytest.raises(SnapshotError, match=r"ck/m_dense_2\.model: does not match .*m_2\.manifest\.json \(step 2\)"):
        Session(solver(2), config())
    # without manifests (as HugeCTR writes them) the same files load
    os.unlink("ck/m_2.manifest.json")
    Session(solver(2), config()).close()
    assert oct(os.stat("ck/m_dense_1.model").st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_directory_swap_outside_a_snapshot_never_loses_the_old_directory(tmp_path, monkeypatch):
    """write_dir_atomic on its own, killed at each operation: the directory holds the old or the new
    files, never none; new directories follow the umask."""
    monkeypatch.chdir(tmp_path)
    old, new = {"key": b"old keys", "emb_vector": b"o" * 8}, {"key": b"new keys!", "emb_vector": b"n" * 16}
    assert forked(fileio.write_dir_atomic, "d", new, count_to="ops") == 0
    assert oct(os.stat("d").st_mode & 0o777) == oct(0o777 & ~_umask())
    ops = int(open("ops").read())
    for k in range(1, ops + 1):
        shutil.rmtree("d")
        fileio.write_dir_atomic("d", old)
        assert os.WIFSIGNALED(forked(fileio.write_dir_atomic, "d", new, fault_at=k)), k
        assert read_tree("d") in (old, new), k
