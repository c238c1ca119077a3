"""Spec validation: every bad value raises a ValueError naming the parameter and the valid range."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import hidyn
from hidyn import models
from hidyn.models.dln import DLNSpec, initial_pq


@pytest.mark.parametrize("field, value, fragment", [
    ("d", 0, "d=0"), ("d", 2.5, "d=2.5"), ("d", True, "d=True"),
    ("ratio", 0.0, "ratio=0.0"), ("ratio", -1.0, "ratio=-1.0"),
    ("sparsity", 0.0, "(0.0, 1.0]"), ("sparsity", 1.5, "sparsity=1.5"),
    ("noise", -0.1, "noise=-0.1"), ("noise", math.inf, "noise=inf"),
    ("init_scale", 0.0, "init_scale=0.0"), ("init_scale", math.nan, "init_scale=nan"),
    ("lr", 0.0, "lr=0.0"), ("lr", -1, "lr=-1"),
    ("teacher", "laplace", "'rademacher', 'gauss'"), ("init", "zero", "'pesme'"),
    ("parametrization", "xy", "'uv', 'pm'"), ("algorithm", "adam", "'gf', 'gd', 'sgd'"),
    ("batch_size", 0, "batch_size=0"), ("batch_size", 10_000, "[1, 512]"),
])
def test_dln_bad_values_name_parameter_and_range(field, value, fragment):
    with pytest.raises(ValueError) as err:
        models.get("dln", **{"d": 1024, field: value})
    assert field in str(err.value) and fragment in str(err.value)


def test_unknown_parameter_and_model():
    with pytest.raises(ValueError, match="unknown parameter.*'foo'.*valid: d, ratio"):
        models.get("dln", foo=1)
    with pytest.raises(ValueError, match="model='mlp' is not a known model; valid: .*dln"):
        models.get("mlp")


def test_spec_is_frozen_and_replace_validates():
    spec = models.get("dln", d=100)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.d = 3
    assert spec.replace(d=200).d == 200
    with pytest.raises(ValueError, match="d=-1"):
        spec.replace(d=-1)
    assert models.get(spec) is spec


def test_defaults_are_the_documented_ones():
    spec = DLNSpec()
    assert (spec.ratio, spec.sparsity, spec.teacher, spec.noise, spec.init_scale, spec.init,
            spec.parametrization, spec.algorithm, spec.lr) == (0.5, 0.1, "rademacher", 0.1, 0.5,
                                                              "pesme", "uv", "gd", 0.1)
    assert DLNSpec.default_t_max == 20.0


def test_initial_pq_matches_dln_note():
    a = 0.3
    # pesme: u0 = √2α, v0 = 0 → w± = α/√2; pm: u0 = 2α → w± = α; balanced: u0 = v0 = α → w+ = α, w− = 0
    for init, (u0, v0) in {"pesme": (math.sqrt(2) * a, 0.0), "pm": (2 * a, 0.0), "balanced": (a, a)}.items():
        p0, q0 = initial_pq(models.get("dln", init=init, init_scale=a))
        assert p0 == pytest.approx(((u0 + v0) / 2) ** 2) and q0 == pytest.approx(((u0 - v0) / 2) ** 2)
        assert p0 - q0 == pytest.approx(u0 * v0)  # β₀
        assert 4 * math.sqrt(p0 * q0) == pytest.approx(abs(u0 ** 2 - v0 ** 2))  # |Δ| = 4γ


def test_online_sgd_needs_batch_size():
    import hidyn

    with pytest.raises(ValueError, match="batch_size is required"):
        hidyn.simulate("dln", d=16, ratio=None, algorithm="sgd", seeds=1, t_max=1.0)


@pytest.mark.parametrize("n_times", [2, 3, 10])
@pytest.mark.parametrize("spacing", ["log", "linear"])
def test_save_times_start_at_zero_and_end_at_t_max(n_times, spacing):
    from hidyn.api import make_times

    spec = models.get("two_layer", d=100)
    t = make_times(spec, t_max=7.0, n_times=n_times, spacing=spacing)
    assert t.size == n_times and t[0] == 0.0 and t[-1] == pytest.approx(7.0)
    assert np.all(np.diff(t) > 0)
    sim = hidyn.simulate("two_layer", d=32, t_max=2.0, n_times=2, seeds=1, progress=False)
    assert float(sim.time[-1]) == pytest.approx(2.0)
