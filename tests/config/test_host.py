"""This machine's RAM (``dsv3sim.config.host``): one reader, used by every command that checks it."""

from __future__ import annotations

import os
import sys

import pytest

from dsv3sim.config import host
from dsv3sim.config.errors import ConfigError

MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    2097152 kB\n"


def test_available_is_meminfo_in_kib(tmp_path, monkeypatch):
    f = tmp_path / "meminfo"
    f.write_text(MEMINFO)
    monkeypatch.setattr(host, "MEMINFO", f)
    assert host.host_memory_bytes(available=True) == 2097152 * 1024 == 2 * 2 ** 30
    f.write_text("MemTotal: 1 kB\n")  # a kernel older than 3.14 has no MemAvailable
    assert host.host_memory_bytes(available=True) is None
    monkeypatch.setattr(host, "MEMINFO", tmp_path / "absent")  # not Linux
    assert host.host_memory_bytes(available=True) is None


def test_total_is_physical_pages():
    assert host.host_memory_bytes() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/meminfo")
def test_available_does_not_exceed_total():
    assert 0 < host.host_memory_bytes(available=True) <= host.host_memory_bytes()


def test_commands_read_the_one_reader(tmp_path, monkeypatch, capsys):
    """`train`/`generate`/`trace` (physical RAM) and `validate` on CPU (available RAM) see what this module
    reads: on a fake machine of 4 KiB with 1 KiB available both refuse the tiny model, in one line each (a
    command reading /proc/meminfo by itself would see this machine instead and launch)."""
    from dsv3sim.cli import main
    from dsv3sim.commands import _args as A
    from dsv3sim.config import load_model_config

    f = tmp_path / "meminfo"
    f.write_text("MemAvailable: 1 kB\n")
    monkeypatch.setattr(host, "MEMINFO", f)
    monkeypatch.setattr(os, "sysconf", {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1}.__getitem__)
    assert A.memory_bytes("cpu") == 4096
    with pytest.raises(ConfigError, match=r"but cpu has 0\.0 GiB"):
        A.check_model_fits(load_model_config("tiny"), "cpu", "build")
    monkeypatch.setattr("dsv3sim.validate.load.cores", lambda: 2)
    monkeypatch.setattr("dsv3sim.validate.launch.launch", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert main(["validate", "--model", "tiny", "--nproc", "2", "--ep", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this machine has 0.0 GiB available" in err[0] and "--micro-batch" in err[0]
