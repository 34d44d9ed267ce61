"""Unit tests of `make profile`'s figures: /proc accounting and py-spy's raw stacks (no stack needed)."""

from __future__ import annotations

import pytest
from tfsp_bench.profile import (
    ProcessCpu,
    cpu_by_name,
    cpu_snapshot,
    markdown,
    parse_args,
    parse_proc_stat,
    top_functions,
)

# One /proc/PID/stat line: the name may hold spaces and parentheses.
STAT = "4242 (gunicorn: w (1)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 3 0 100 0 0"

PROC = 'process 10:"gunicorn master";process 11:"gunicorn worker"'
HANDLE = "SyncWorker.handle (gunicorn/workers/sync.py:141)"
APP = "WSGIHandler.__call__ (django/core/handlers/wsgi.py:124)"
GRPC = "_UnaryUnaryMultiCallable._blocking (grpc/_channel.py:1163)"
RAW = "\n".join(
    [
        f"{PROC};<module> (gunicorn:8);{HANDLE};{APP};{GRPC} 60",
        f"{PROC};<module> (gunicorn:8);{HANDLE};{APP};{GRPC.replace('1163', '1170')} 20",
        f"{PROC};<module> (gunicorn:8);{HANDLE};close_graceful (gunicorn/util.py:312) 20",
        # Waiting for a connection: not a request, left out.
        f"{PROC};<module> (gunicorn:8);SyncWorker.wait (gunicorn/workers/sync.py:36) 900",
        "",
    ]
)


def test_proc_stat_line_gives_name_and_ticks():
    assert parse_proc_stat(STAT) == ("gunicorn: w (1)", 250, 75)


def test_cpu_is_summed_by_name_over_processes_alive_at_both_snapshots():
    before = {
        "1": ("gunicorn", 100, 10),
        "2": ("gunicorn", 50, 5),
        "3": ("nginx", 10, 10),
        "9": ("gone", 0, 0),
    }
    after = {
        "1": ("gunicorn", 300, 30),
        "2": ("gunicorn", 150, 15),
        "3": ("nginx", 20, 40),
        "4": ("new", 500, 0),
    }
    cpu = cpu_by_name(before, after, 100)
    assert cpu == [ProcessCpu("gunicorn", 3.0, 0.3), ProcessCpu("nginx", 0.1, 0.3)]
    assert cpu[0].total_s == pytest.approx(3.3)


def test_a_reused_pid_of_another_program_is_not_counted(tmp_path):
    cpu = cpu_by_name({"7": ("sleep", 0, 0)}, {"7": ("gunicorn", 900, 0)}, 100)
    assert cpu == []


def test_snapshot_reads_proc_and_skips_what_is_not_a_process(tmp_path):
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(STAT)
    (tmp_path / "4243").mkdir()  # exited between listing and reading: no stat file
    (tmp_path / "self").mkdir()
    assert cpu_snapshot(tmp_path) == {"4242": ("gunicorn: w (1)", 250, 75)}


def test_top_functions_count_only_samples_inside_a_request_and_merge_line_numbers():
    samples, inclusive, own = top_functions(RAW)
    assert samples == 100
    assert inclusive[0] == ("SyncWorker.handle (gunicorn/workers/sync.py)", 1.0)
    assert dict(inclusive)["_UnaryUnaryMultiCallable._blocking (grpc/_channel.py)"] == pytest.approx(0.8)
    assert "<module> (gunicorn)" not in dict(inclusive)
    assert own == [
        ("_UnaryUnaryMultiCallable._blocking (grpc/_channel.py)", pytest.approx(0.8)),
        ("close_graceful (gunicorn/util.py)", pytest.approx(0.2)),
    ]


def test_a_recursive_function_counts_once_per_sample():
    raw = f"{HANDLE};f (a.py:1);f (a.py:2);f (a.py:3) 10\n"
    _, inclusive, own = top_functions(raw)
    assert dict(inclusive)["f (a.py)"] == 1.0
    assert own == [("f (a.py)", 1.0)]


def test_no_request_samples_gives_nothing_rather_than_dividing_by_zero():
    assert top_functions("SyncWorker.wait (gunicorn/workers/sync.py:36) 50\nnot a line\n") == (0, [], [])


def test_markdown_gives_cpu_per_request_and_the_tables():
    text = markdown(1000, 15.0, [ProcessCpu("gunicorn", 0.9, 0.2)], top_functions(RAW), rows=2)
    assert "| gunicorn | 1100 | 900 | 200 |" in text
    assert "| 100.0% | `SyncWorker.handle (gunicorn/workers/sync.py)` |" in text
    assert "| 80.0% | `_UnaryUnaryMultiCallable._blocking (grpc/_channel.py)` |" in text
    assert "(100 py-spy samples, wall clock)" in text


@pytest.mark.parametrize("argv", [["--rate", "0"], ["--seconds", "0"], ["--concurrency", "-1"]])
def test_bad_arguments_stop_before_anything_runs(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)
