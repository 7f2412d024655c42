"""Range-constrained option types for registry builders: ``lr: Positive``, ``beta1: Unit``.

A builder's signature is the one place an option's type *and* range live; the registry checks
both with pydantic before anything runs, and the error names the bound (``float (ge=0)``).
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

NonNegative = Annotated[float, Ge(0.0)]
Positive = Annotated[float, Gt(0.0)]
Unit = Annotated[float, Ge(0.0), Lt(1.0)]  # [0, 1): momenta, betas, dropout
Fraction = Annotated[float, Gt(0.0), Lt(1.0)]  # (0, 1): split fractions
Probability = Annotated[float, Ge(0.0), Le(1.0)]
PositiveInt = Annotated[int, Ge(1)]
NonNegativeInt = Annotated[int, Ge(0)]
