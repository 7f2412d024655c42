"""Mean-field signal propagation: the quadrature against closed forms, the order-to-chaos
boundary where the papers put it, and the depth scales' divergence there.

Independent references: for phi = erf the Gaussian expectations have closed forms (Williams
1998: E[erf(u1) erf(u2)] = (2/pi) arcsin(2 q12 / sqrt((1 + 2 q11)(1 + 2 q22)))), and for tanh at
sigma_b = 0 the ordered phase has q* = 0, so chi_1 = sigma_w^2 exactly and the boundary is at
sigma_w^2 = 1. Schoenholz et al. (2017) put the boundary for sigma_b^2 = 0.05 at sigma_w^2 ~ 1.76.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from gradatlas.reports import meanfield as mf


def erf_pair(q: float, c: float) -> float:
    """E[erf(u1) erf(u2)] for variance q and correlation c, in closed form."""
    return 2 / math.pi * math.asin(2 * q * c / (1 + 2 * q))


@pytest.mark.parametrize("q", [0.1, 1.0, 4.0, 9.0])
@pytest.mark.parametrize("c", [-0.5, 0.0, 0.3, 0.9, 1.0])
def test_the_quadrature_matches_closed_forms(q: float, c: float) -> None:
    erf = mf.ACTIVATIONS["erf"]
    assert mf.expect_pair(erf.phi, erf.phi, q, c) == pytest.approx(erf_pair(q, c), abs=1e-10)
    # E[phi'(u)^2] for erf: (4/pi) E[exp(-2u^2)] = (4/pi) / sqrt(1 + 4q)
    assert mf.expect(lambda u: erf.dphi(u) ** 2, q) == pytest.approx(
        4 / math.pi / math.sqrt(1 + 4 * q), rel=1e-10
    )
    assert mf.expect(lambda u: u**2, q) == pytest.approx(q, rel=1e-12)


def test_the_length_fixed_point_is_a_fixed_point() -> None:
    for sw2, sb2 in [(1.5, 0.0), (2.0, 0.05), (4.0, 0.3), (0.5, 0.05)]:
        q = mf.length_fixed_point(sw2, sb2)
        assert q > 0
        assert mf.length_map(q, sw2, sb2) == pytest.approx(q, rel=1e-9)
    # sigma_b = 0, ordered phase: lengths decay to zero
    assert mf.length_fixed_point(0.8, 0.0) == 0.0
    assert mf.length_fixed_point(1.0, 0.0) == 0.0


def test_the_boundary_for_tanh_without_bias_is_sigma_w2_one() -> None:
    assert mf.critical_sigma_w2(0.0) == pytest.approx(1.0, abs=1e-6)
    for sw2 in (0.25, 0.5, 0.9):  # q* = 0: tanh is linear there, chi_1 = sigma_w^2 phi'(0)^2
        m = mf.mean_field(sw2, 0.0)
        assert (m.q_star, m.c_star, m.phase) == (0.0, 1.0, "ordered")
        assert m.chi_1 == pytest.approx(sw2, rel=1e-12)
        assert m.xi_c == pytest.approx(-1 / math.log(sw2), rel=1e-9)
    critical = mf.mean_field(1.0, 0.0)
    assert critical.chi_1 == pytest.approx(1.0) and math.isinf(critical.xi_c)
    assert math.isinf(critical.trainable_depth)


def test_the_published_boundary_for_sigma_b2_005_is_near_1_76() -> None:
    crit = mf.critical_sigma_w2(0.05)
    assert crit == pytest.approx(1.76, abs=0.01)
    assert mf.mean_field(1.70, 0.05).chi_1 < 1 < mf.mean_field(1.82, 0.05).chi_1
    assert mf.mean_field(1.70, 0.05).phase == "ordered"
    assert mf.mean_field(1.82, 0.05).phase == "chaotic"


@pytest.mark.parametrize("sb2", [0.0, 0.05])
def test_xi_c_diverges_at_the_boundary_and_falls_away_from_it(sb2: float) -> None:
    crit = mf.critical_sigma_w2(sb2)
    below = [crit * f for f in (0.3, 0.6, 0.9, 0.99)]
    above = [crit * f for f in (1.01, 1.1, 1.5, 3.0)]
    xi_below = [mf.mean_field(s, sb2).xi_c for s in below]
    xi_above = [mf.mean_field(s, sb2).xi_c for s in above]
    assert xi_below == sorted(xi_below)  # grows towards the boundary...
    assert xi_above == sorted(xi_above, reverse=True)  # ...and falls beyond it
    assert min(xi_below[-1], xi_above[0]) > 5 * max(xi_below[0], xi_above[-1])
    near = mf.mean_field(crit * (1 + 1e-4), sb2).xi_c
    assert near > 1e3
    chi = [mf.mean_field(s, sb2).chi_1 for s in below + above]
    assert chi == sorted(chi)  # chi_1 increases with sigma_w^2 through 1


def test_the_chaotic_phase_has_a_correlation_fixed_point_below_one() -> None:
    m = mf.mean_field(4.0, 0.05)
    assert m.phase == "chaotic" and 0 < m.c_star < 1
    assert mf.correlation_map(m.c_star, m.q_star, 4.0, 0.05) == pytest.approx(m.c_star, abs=1e-9)
    assert m.chi_c < 1 < m.chi_1  # c* is stable, c = 1 is not
    odd = mf.mean_field(4.0, 0.0)  # tanh is odd: without bias the inputs decorrelate fully
    assert odd.c_star == 0.0 and odd.chi_c < 1


def test_the_trainable_depth_curve() -> None:
    curve = mf.trainable_depth_curve([0.25, 0.5625, 1.0, 2.25, 4.0, 9.0])
    expected = [-6 / math.log(0.25), -6 / math.log(0.5625), math.inf]
    assert curve[:3] == pytest.approx(expected)
    assert curve[3] > curve[4] > curve[5] > 6  # deeper into chaos: shallower trainable nets
    assert np.all(curve > 0)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no mean-field entry"):
        mf.mean_field(1.0, 0.0, "relu")
    with pytest.raises(ValueError):
        mf.mean_field(-1.0)


def test_the_module_needs_no_torch() -> None:
    code = (
        "import sys\nfrom gradatlas.reports import meanfield\nmeanfield.mean_field(2.0, 0.05)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
