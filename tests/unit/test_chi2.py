"""The conformance kit's chi-square p-value needs no SciPy and agrees with it."""

from __future__ import annotations

import pytest
from scipy.stats import chi2

from decodekit.testing import chi2_sf, chi_square_test


@pytest.mark.parametrize(
    ("statistic", "dof"),
    [(0.0, 1), (1e-3, 1), (3.2, 4), (100.0, 50), (500.0, 3), (30.0, 200), (12.5, 7)],
)
def test_chi2_sf_matches_scipy(statistic, dof):
    assert chi2_sf(statistic, dof) == pytest.approx(chi2.sf(statistic, dof), rel=1e-9, abs=1e-300)


def test_chi_square_test_rejects_a_wrong_distribution_and_accepts_the_right_one():
    expected = {"a": 0.5, "b": 0.3, "c": 0.2}
    good = chi_square_test({"a": 502, "b": 297, "c": 201}, expected)
    bad = chi_square_test({"a": 700, "b": 200, "c": 100}, expected)
    assert good.p_value > 0.5 and bad.p_value < 1e-20
    assert good.dof == 2 and good.samples == 1000 and not good.impossible


def test_the_kit_imports_without_scipy():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['scipy'] = None\n"
        "from decodekit.testing import chi_square_test\n"
        "print(chi_square_test({0: 40, 1: 60}, {0: 0.4, 1: 0.6}).p_value)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) == pytest.approx(1.0)
