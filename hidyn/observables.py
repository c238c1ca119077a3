"""Observables computed from order parameters: every loss formula of hidyn lives here, once.

Theory solvers and Monte-Carlo backends both call these functions, so a simulated and a predicted
`test_loss` can never disagree by a convention.  Conventions per family (see the theory notes):

* DLN (dln.md §2.2): losses carry no ½ and `test_loss` includes σ².
* two_layer (teacher_student.md §5) and single_index (single_index.md §1): `test_loss` carries a ½ and
  excludes the label noise.
"""
from __future__ import annotations

import numpy as np
