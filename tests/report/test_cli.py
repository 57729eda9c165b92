"""`dsv3sim report`: writes the HTML and the index; bad input exits 2 with one line."""

from __future__ import annotations

import json

from dsv3sim.cli import main


def test_report_command_writes_html_and_index(tmp_path, train_json, capsys):
    out = tmp_path / "reports" / "x.html"
    assert main(["report", str(train_json), "--out", str(out), "--price-per-gpu-hour", "3", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["report"] == str(out) and out.exists() and (out.parent / "index.html").exists()
    assert info["sections"]["summary"] is True and info["sections"]["sweep"] is False
    assert info["figures"] == out.read_text().count("Plotly.newPlot(")
    assert "$3 per GPU-hour" in out.read_text()


def test_report_index_only_and_errors(tmp_path, train_json, capsys):
    assert main(["report", "--index", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").exists()
    assert main(["report", str(tmp_path / "missing.json")]) == 2
    assert main(["report", str(train_json), "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "must end in .html" in err and "--index" in err
