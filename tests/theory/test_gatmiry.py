"""Gatmiry et al. constants, as reported: formulas and vacuity at small n."""

import math

import pytest

from icgd.theory.gatmiry import gatmiry_constant, gradient_dominance_constant


def test_gatmiry_constant_formula_and_vacuity():
    c, delta = gatmiry_constant(1, 5, 20)
    assert math.isclose(delta, (8 * 5 / math.sqrt(20)) ** 0.5)
    assert math.isclose(c, 8 * delta * 5**0.5)
    for L in (1, 2, 4, 8):
        assert gatmiry_constant(L, 5, 20)[0] >= 1  # vacuous at the experiments' size
        assert gatmiry_constant(L, 10, 10)[0] >= 1
    # c shrinks with n, and only becomes < 1 at astronomically large n
    assert gatmiry_constant(2, 5, 10**6)[0] < gatmiry_constant(2, 5, 20)[0]
    c_big, delta_big = gatmiry_constant(1, 1, 10**12)
    assert math.isclose(delta_big, math.sqrt(8 / 1e6)) and c_big < 1
    with pytest.raises(ValueError):
        gatmiry_constant(0, 5, 20)


def test_gradient_dominance_constant():
    assert gradient_dominance_constant(1) == (1 / 16, 1.0)
    kappa, p = gradient_dominance_constant(4)
    assert kappa == 1 / 16 and math.isclose(p, 7 / 4)
    with pytest.raises(ValueError):
        gradient_dominance_constant(0)
