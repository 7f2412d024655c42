"""Mean-field signal propagation: the quadrature against closed forms, the order-to-chaos
boundary where the papers put it, and the depth scales' divergence there.

Independent references: for phi = erf the Gaussian expectations have closed forms (Williams
1998: E[erf(u1) erf(u2)] = (2/pi) arcsin(2 q12 / sqrt((1 + 2 q11)(1 + 2 q22)))), and for tanh at
sigma_b = 0 the ordered side has q* = 0, so chi_1 = sigma_w^2 exactly and the boundary is at
sigma_w^2 = 1 (and that side is the degenerate ``vanishing`` phase, not ordered proper: the
exact maps show it). Schoenholz et al. (2017) put the boundary for sigma_b^2 = 0.05 at
sigma_w^2 ~ 1.76, and a simulated wide net checks q*, chi_1 and c* there.
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
        assert (m.q_star, m.phase, m.scale_name) == (0.0, "vanishing", "xi_grad")
        assert math.isnan(m.c_star) and math.isinf(m.xi_c)  # no c is preferred: xi_c = inf
        assert m.chi_1 == pytest.approx(sw2, rel=1e-12)
        assert m.xi_grad == pytest.approx(-1 / math.log(sw2), rel=1e-9)
        assert m.trainable_depth == pytest.approx(-6 / math.log(sw2), rel=1e-9)
    critical = mf.mean_field(1.0, 0.0)
    assert critical.chi_1 == pytest.approx(1.0) and math.isinf(critical.xi_c)
    assert critical.phase == "critical" and math.isinf(critical.trainable_depth)


def iterate_maps(sw2: float, sb2: float, q: float, c: float, layers: int) -> tuple[float, float]:
    """Two inputs of squared length q and correlation c sent through ``layers`` layers of the
    exact length and correlation maps (each layer's own q, not the fixed point's)."""
    phi = np.tanh
    for _ in range(layers):
        q_next = sw2 * mf.expect(lambda u: phi(u) ** 2, q) + sb2
        c = (sw2 * mf.expect_pair(phi, phi, q, c) + sb2) / q_next
        q = q_next
    return q, c


def test_without_bias_the_ordered_side_freezes_correlations_instead_of_ordering_them() -> None:
    """Why sigma_b^2 = 0, sigma_w^2 < 1 is not labelled ``ordered``: the length dies (q -> 0)
    and the net turns linear, which keeps two inputs' correlation where it was; with
    sigma_b^2 = 0.05 the same sigma_w^2 is ordered proper and the correlation goes to c* = 1."""
    q, c = iterate_maps(0.5, 0.0, 1.0, 0.5, 40)
    assert q < 1e-10 and 0.4 < c < 0.5  # frozen near where it started
    q, c = iterate_maps(0.5, 0.05, 1.0, 0.5, 40)
    assert q == pytest.approx(mf.mean_field(0.5, 0.05).q_star, rel=1e-6)
    assert c == pytest.approx(1.0, abs=1e-6) and mf.mean_field(0.5, 0.05).phase == "ordered"


def test_mean_field_at_the_papers_bias_matches_a_simulated_wide_net() -> None:
    """q* and chi_1 at sigma_b^2 = 0.05, in both phases, against a random tanh net of width
    800 (numpy, fixed seed), averaged over its last 15 of 30 layers: q* within 10% (the fresh
    bias draws of each layer make it the noisier), chi_1 within 4%."""
    rng = np.random.default_rng(7)
    width, layers, sb2 = 800, 30, mf.PAPER_SIGMA_B2
    for sw2 in (1.0, 4.0):
        h = rng.standard_normal((width, 1)).astype(np.float32)
        q_seen, chi_seen = [], []
        for layer in range(layers):
            w = rng.standard_normal((width, width), dtype=np.float32) * math.sqrt(sw2 / width)
            b = rng.standard_normal((width, 1), dtype=np.float32) * math.sqrt(sb2)
            h = w @ (np.tanh(h) if layer else h) + b
            if layer >= layers // 2:
                q_seen.append(float((h**2).mean()))
                chi_seen.append(sw2 * float((1 / np.cosh(h) ** 4).mean()))
        m = mf.mean_field(sw2, sb2)
        assert np.mean(q_seen) == pytest.approx(m.q_star, rel=0.10), sw2
        assert np.mean(chi_seen) == pytest.approx(m.chi_1, rel=0.04), sw2
    assert mf.mean_field(1.0, sb2).phase == "ordered" and mf.mean_field(4.0, sb2).phase == "chaotic"


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


def test_the_trainable_depth_at_the_papers_bias() -> None:
    """At sigma_b^2 = 0.05 every sigma_w^2 off the boundary is ordered proper or chaotic, and
    6 xi_c rises towards the boundary from both sides."""
    sw2 = [0.49, 1.0, 1.44, 2.56, 4.0, 9.0]
    theory = [mf.mean_field(s, 0.05) for s in sw2]
    assert [m.phase for m in theory] == ["ordered"] * 3 + ["chaotic"] * 3
    assert all(m.scale_name == "xi_c" and m.q_star > 0 for m in theory)
    curve = mf.trainable_depth_curve(sw2, 0.05)
    assert curve == pytest.approx([7.0, 21.8, 74.3, 67.8, 41.9, 26.9], rel=0.01)
    ordered = [m for m in theory if m.phase == "ordered"]  # there chi_c = chi_1, c* = 1
    assert all(m.c_star == 1.0 and m.xi_c == pytest.approx(m.xi_grad) for m in ordered)


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
