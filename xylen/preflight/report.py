"""PASS / WARN / FAIL lines and the exit status they give."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Status(str, Enum):
    PASS = "PASS"  # nosec B105 # a check's status, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    """One verified fact: what was checked, its status, and a line saying what was found."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.value:<4}  {self.name:<22} {self.detail}"


def passed(name: str, detail: str) -> Check:
    return Check(name, Status.PASS, detail)


def warned(name: str, detail: str) -> Check:
    return Check(name, Status.WARN, detail)


def failed(name: str, detail: str) -> Check:
    return Check(name, Status.FAIL, detail)


@dataclass
class Report:
    """The checks in the order they ran."""

    checks: list[Check] = field(default_factory=list)

    def add(self, *checks: Check) -> None:
        self.checks.extend(checks)

    def count(self, status: Status) -> int:
        return sum(1 for c in self.checks if c.status is status)

    @property
    def exit_code(self) -> int:
        """1 when any check failed, else 0 (warnings do not fail the preflight)."""
        return 1 if self.count(Status.FAIL) else 0

    def lines(self) -> list[str]:
        summary = (
            f"preflight: {self.count(Status.PASS)} passed, {self.count(Status.WARN)} warnings, "
            f"{self.count(Status.FAIL)} failed"
        )
        return [c.line() for c in self.checks] + [summary]
