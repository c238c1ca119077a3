"""Statistical tolerances for theory-vs-Monte-Carlo agreement.

A Monte-Carlo seed mean at finite d differs from the d → ∞ theory by (i) sampling error, measured by
the standard error of the mean (SEM) over seeds, and (ii) a systematic finite-size bias that decays as
a power of d.  A point passes when

    |MC mean − theory| ≤ z·SEM + c·d^(−p) + atol + rtol·|theory|,

where SEM combines the MC and (when the theory is itself sampled, as the DMFT is) the theory's error
in quadrature.  Each case that uses a non-zero c or p must justify them (tests, validation/cases.py).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Tolerance"]


@dataclass(frozen=True)
class Tolerance:
    """|MC mean − theory| ≤ z·SEM + c·d^(−p) + atol + rtol·|theory|.

    Parameters
    ----------
    z : float
        Number of standard errors allowed (3 ↔ a two-sided 0.3 % false-alarm rate per point for
        Gaussian errors).
    c : float
        Finite-size bias allowance c·d^(−p): its amplitude.
    p : float
        Finite-size bias allowance c·d^(−p): its exponent in d.
    atol : float
        Absolute slack (e.g. for a time-discretisation error of the theory).
    rtol : float
        Relative slack, times |theory|.
    """

    z: float = 3.0
    c: float = 0.0
    p: float = 0.5
    atol: float = 0.0
    rtol: float = 0.0

    def __post_init__(self):
        for name in ("z", "c", "p", "atol", "rtol"):
            val = getattr(self, name)
            if not np.isfinite(val) or val < 0:
                raise ValueError(f"Tolerance.{name}={val!r} is invalid: must be a finite number ≥ 0")

    def bound(self, sem, theory, d=None):
        """Allowed |residual| (broadcast over ``sem`` and ``theory``)."""
        finite = 0.0 if (d is None or self.c == 0) else self.c * float(d) ** (-self.p)
        return self.z * sem + finite + self.atol + self.rtol * abs(theory)

    def to_dict(self) -> dict:
        return asdict(self)
