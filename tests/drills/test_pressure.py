"""The PSI sampler reads the kernel's stall totals and says how much they grew over a request."""

from __future__ import annotations

import time
from pathlib import Path

import pressure
import pytest
from pressure import PressureSampler, describe, during, read_totals

# /proc/pressure's format (avg fields shortened: only total= is read).
CPU = "some avg10=0.00 total={some}\nfull avg10=0.00 total=0\n"
IO = "some avg10=0.10 total={some}\nfull avg10=0.00 total={full}\n"


def _write(directory: Path, cpu: int, io_some: int, io_full: int) -> None:
    (directory / "cpu").write_text(CPU.format(some=cpu))
    (directory / "io").write_text(IO.format(some=io_some, full=io_full))


def test_totals_are_read_from_every_file_there_is(tmp_path):
    _write(tmp_path, 25_456_733, 1_000, 500)
    # No memory file: that resource is left out, not an error.
    assert read_totals(tmp_path) == {"cpu.some": 25_456_733, "cpu.full": 0, "io.some": 1_000, "io.full": 500}


def test_no_psi_means_no_totals(tmp_path):
    assert read_totals(tmp_path / "absent") == {}


def test_growth_is_interpolated_between_the_samples_around_the_request():
    samples = [
        (10.0, {"cpu.some": 0, "io.full": 0}),
        (10.1, {"cpu.some": 50_000, "io.full": 0}),
        (10.2, {"cpu.some": 250_000, "io.full": 10_000}),
        (10.3, {"cpu.some": 260_000, "io.full": 10_000}),
    ]
    # 10.05: halfway to 50 ms; 10.15: halfway from 50 to 250 ms.
    assert during(samples, 10.05, 10.15) == pytest.approx({"cpu.some": 125.0, "io.full": 5.0})
    assert during(samples, 10.1, 10.2) == pytest.approx({"cpu.some": 200.0, "io.full": 10.0})
    assert during(samples, 10.1, 10.1) == {"cpu.some": 0.0, "io.full": 0.0}
    assert during(samples, 10.1, 10.2, keys=("cpu.some",)) == pytest.approx({"cpu.some": 200.0})
    assert during(samples, 10.0, 10.3) == pytest.approx({"cpu.some": 260.0, "io.full": 10.0})
    # A request outside the samples cannot be covered: nothing is claimed.
    assert during(samples, 9.9, 10.1) == {}
    assert during(samples, 10.25, 10.35) == {}
    assert during([], 1.0, 2.0) == {}


def test_growth_is_described_in_ms():
    assert describe({"cpu.some": 812.4, "io.full": 0.0}) == "cpu.some 812 ms, io.full 0 ms"
    assert describe({}) == "no PSI figures"


def test_the_sampler_samples_until_stopped(tmp_path):
    _write(tmp_path, 100, 0, 0)
    with PressureSampler(interval=0.01, directory=tmp_path) as sampler:
        time.sleep(0.05)
        _write(tmp_path, 5_100, 0, 0)
        time.sleep(0.05)
    assert len(sampler.samples) >= 3
    assert [moment for moment, _ in sampler.samples] == sorted(moment for moment, _ in sampler.samples)
    assert during(sampler.samples, sampler.samples[0][0], sampler.samples[-1][0])["cpu.some"] == 5.0


@pytest.mark.skipif(not pressure.PRESSURE_DIR.exists(), reason="this kernel has no PSI")
def test_this_machine_reports_cpu_pressure():
    assert "cpu.some" in read_totals()
