"""The MTP acceptance measured on the executable model: the committed recipe re-derives the committed value."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dsv3sim.workload.serving import DEFAULT_MTP_ACCEPTANCE, MTP_MEASUREMENT, measured_mtp_acceptance


def test_measurement_file_names_its_recipe_and_serving_defaults_to_published():
    d = json.loads(MTP_MEASUREMENT.read_text())
    assert d["mtp_acceptance_rate"] == pytest.approx(d["accepted"] / d["drafted"])
    assert any(c.startswith("dsv3sim train tiny") for c in d["commands"])
    assert measured_mtp_acceptance()[0] == d["mtp_acceptance_rate"]
    assert pytest.approx(0.875) == DEFAULT_MTP_ACCEPTANCE  # DeepSeek-V3 §5.4.3: 85-90 %


@pytest.mark.slow
def test_recipe_rederives_the_committed_acceptance(tmp_path):
    d = json.loads(MTP_MEASUREMENT.read_text())
    ckpt = tmp_path / "ckpt.safetensors"
    train, gen = (c.replace("CKPT", str(ckpt)).split()[1:] for c in d["commands"])
    subprocess.run([sys.executable, "-m", "dsv3sim", *train], check=True, capture_output=True, timeout=3600)
    out = subprocess.run([sys.executable, "-m", "dsv3sim", *gen], check=True, capture_output=True, text=True,
                         timeout=1800)
    g = json.loads(out.stdout)
    assert (g["accepted"], g["drafted"]) == (d["accepted"], d["drafted"])
