"""Bad input through the hugectr-lab command: one line on stderr naming the file or field, exit status 2,
no traceback; --debug lets the exception through; an internal error says so and exits 1."""

import os
import shutil
import subprocess
import sys

import pytest

from hugectr_lab import cli
from hugectr_lab.cli import main
from hugectr_lab.data import resolve_file_list

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "session"))
from session_helpers import dnn_config, write_config  # noqa: E402

SMALL = ["--quiet", "--files", "1", "--samples", "256", "--vocab", "20", "--iterations", "2", "--batchsize", "64"]


def one_line_error(capsys, command="train"):
    err = capsys.readouterr().err
    assert err.startswith(f"hugectr-lab {command}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return write_config(tmp_path / "c.json", dnn_config())


def test_binary_config_names_the_file_and_byte(tmp_path, capsys):
    path = tmp_path / "model.bin"
    path.write_bytes(b'{"layers": ' + bytes(range(128, 256)))
    assert main(["train", str(path), "--quiet"]) == 2
    assert f"{path}: byte 11: not UTF-8 text: a JSON config is a text file" in one_line_error(capsys)


def test_binary_file_list_names_the_list(config, tmp_path, capsys):
    assert main(["generate", config, "--files", "1", "--samples", "64"]) == 0
    capsys.readouterr()
    (tmp_path / "data" / "file_list.txt").write_bytes(b"1\n\xff\xfe\x00data")
    assert main(["train", config] + SMALL) == 2
    assert "data/file_list.txt: byte 2: not UTF-8 text: a file list is a text file" in one_line_error(capsys)


@pytest.mark.parametrize("kind, make", [
    ("a directory", lambda p: p.mkdir()),
    ("a FIFO (named pipe)", lambda p: os.mkfifo(p)),  # reading it would block forever
])
def test_special_file_as_config_says_what_it_is(tmp_path, capsys, kind, make):
    path = tmp_path / "special"
    make(path)
    assert main(["train", str(path), "--quiet"]) == 2
    assert f"{path}: JSON config is {kind}, not a regular file" in one_line_error(capsys)


def test_dev_null_as_config(capsys):
    assert main(["train", os.devnull]) == 2
    assert f"{os.devnull}: JSON config is a character device, not a regular file" in one_line_error(capsys)


def test_directory_as_data_file_is_not_reported_missing(config, tmp_path, capsys):
    assert main(["generate", config, "--files", "1", "--samples", "64"]) == 0
    capsys.readouterr()
    (tmp_path / "data" / "a_directory").mkdir()
    (tmp_path / "data" / "file_list.txt").write_text("1\ndata/a_directory\n")
    assert main(["train", config] + SMALL) == 2
    assert "data file 'data/a_directory' (data/a_directory) is a directory, not a regular file" in \
        one_line_error(capsys)


def test_non_finite_data_names_file_and_sample(config, tmp_path, capsys):
    assert main(["generate", config, "--files", "1", "--samples", "64"]) == 0
    capsys.readouterr()
    entry = resolve_file_list("data/file_list.txt")[0]
    data = tmp_path / entry
    raw = bytearray(data.read_bytes())
    raw[69 + 4 + 4:69 + 4 + 8] = b"\x00\x00\xc0\x7f"  # sample 0's first dense value: NaN (checksum fixed below)
    raw[69 + 4 + int.from_bytes(raw[69:73], "little")] = sum(raw[73:73 + int.from_bytes(raw[69:73], "little")]) % 256
    data.write_bytes(bytes(raw))
    assert main(["train", config] + SMALL) == 2
    assert f"{entry}: byte 77: sample 0: dense feature 0 is nan" in one_line_error(capsys)


def test_corrupt_optimizer_sidecar_names_the_sidecar(config, tmp_path):
    from hugectr_lab.config import solver_parser_helper
    from hugectr_lab.session import Session

    assert main(["train", config, "--output", "run"] + SMALL) == 0
    opt = tmp_path / "elsewhere" / "opt.model"
    opt.parent.mkdir()
    shutil.copyfile(tmp_path / "run_opt_dense_2.model", opt)
    solver = solver_parser_helper(batchsize=64, batchsize_eval=64, vvgpu=[[0]], dense_opt_states_file=str(opt))
    for content, message in ((b'{"step": 4', "optimizer step sidecar: not valid JSON"),
                             (b'\xff\xfe', "optimizer step sidecar: not valid JSON"),
                             (b'{"step": -3}', 'optimizer step sidecar: "step" must be an integer >= 0, got -3')):
        (tmp_path / "elsewhere" / "opt.model.json").write_bytes(content)
        with pytest.raises(ValueError, match=f"{opt}.json: {message}"):
            Session(solver, config)


FULL_DISK = r"""
import resource, signal, sys
from hugectr_lab.cli import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG (errno 27)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.parametrize("limit, args, names", [
    (20_000, ["generate", "c.json", "--files", "1", "--samples", "4096"], "data/"),  # a data file
    (3_000, ["train", "c.json", "--output", "run"] + SMALL, "run"),  # a model file
])
def test_a_full_disk_names_the_file_being_written(config, tmp_path, limit, args, names):
    """RLIMIT_FSIZE makes writes fail as a full disk does, but with EFBIG: the error carries no file name."""
    if args[0] == "train":
        assert main(["generate", config, "--files", "1", "--samples", "256", "--vocab", "20"]) == 0
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(limit)] + args, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 2, run.stderr
    line = run.stderr.strip().splitlines()[-1]
    assert "File too large" in line and "Traceback" not in run.stderr, run.stderr
    written = line.split(": error: ")[1].split(": File too large")[0]
    assert names in written, line


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(Exception, match="JSON config is a directory"):
        main(["train", str(tmp_path), "--debug"])
    with pytest.raises(Exception, match="JSON config is a directory"):
        main(["--debug", "train", str(tmp_path)])


def test_an_internal_error_is_one_line_exit_1(monkeypatch, capsys, config):
    def broken(args):
        raise KeyError("slot")

    monkeypatch.setattr(cli, "_cmd_generate", broken)
    assert main(["generate", config]) == 1
    err = capsys.readouterr().err
    assert err == ("hugectr-lab generate: internal error: KeyError: 'slot' (rerun with --debug for the traceback, "
                   "and please report it)\n")


def test_console_script_exits_2_without_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "hugectr_lab.cli", "train", str(tmp_path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and run.stderr == f"hugectr-lab train: error: {tmp_path}: JSON config is a " \
                                                 "directory, not a regular file\n"
