"""Slow agreement tests of the linear family (docs/theory/linear.md).

* every registered ``linear`` case of validation/cases.py: online SGD against the exact mode recursion
  (§2; exact at every d, so the tolerance is sampling error only) and full-batch GD at d ≤ 800 against
  the d → ∞ Marchenko–Pastur curves (§6);
* the power of the recursion check against a wrong theory is tested in tests/unit/test_linear.py with
  10⁵ brute-force runs (few-seed means of this right-skewed loss cannot separate a 2–8 % error).

Run with ``pytest tests/agreement/test_linear.py -s`` to see the tables.
"""
from __future__ import annotations

import numpy as np
import pytest

import hidyn
from hidyn.validation.cases import CASES, run_case

pytestmark = pytest.mark.slow

LIN_CASES = [(name, d) for name, case in CASES.items() if case.model == "linear" for d in case.dims]


@pytest.mark.parametrize("name, d", LIN_CASES, ids=[f"{n}-d{d}" for n, d in LIN_CASES])
def test_linear_case(name, d):
    cmp = run_case(CASES[name], d)
    print(f"\n[{name}, d={d}]")
    cmp.summary()
    cmp.assert_ok()
