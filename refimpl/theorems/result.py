"""The result of one numerical check: the claim, its equation, the residual, the tolerance."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class CheckResult:
    """One verified claim.

    ``passed`` is ``residual <= tolerance``; for a claim that something must *fail* (the
    negative controls the paper itself predicts, e.g. Theorem 1 under softplus) set
    ``must_exceed=True`` and it is ``residual > tolerance``. ``details`` carries the other
    numbers worth reporting (step counts, standard errors, acceptance rates, ...).
    """

    name: str
    claim: str
    equation: str
    residual: float
    tolerance: float
    must_exceed: bool = False
    details: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.residual):
            return False
        if self.must_exceed:
            return self.residual > self.tolerance
        return self.residual <= self.tolerance

    @property
    def bound(self) -> str:
        return ("> " if self.must_exceed else "<= ") + f"{self.tolerance:.0e}"

    def as_dict(self) -> dict:
        return dict(
            name=self.name,
            claim=self.claim,
            equation=self.equation,
            residual=self.residual,
            tolerance=self.tolerance,
            must_exceed=self.must_exceed,
            passed=self.passed,
            details=self.details,
        )


def format_table(results) -> str:
    """A plain-text table: claim, equation, residual, bound, PASS/FAIL."""
    width = max([len(r.claim) for r in results] + [5])
    eq = max([len(r.equation) for r in results] + [8])
    lines = [
        f"{'claim':{width}s}  {'equation':{eq}s}  {'residual':>10s}  {'bound':>9s}  result",
        "-" * (width + eq + 36),
    ]
    for r in results:
        lines.append(
            f"{r.claim:{width}s}  {r.equation:{eq}s}  {r.residual:10.2e}  {r.bound:>9s}  "
            f"{'PASS' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines)
