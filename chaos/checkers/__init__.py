"""Checkers: one file per invariant; every landed checker runs after every scenario.

A checker module defines
  NAME         the name scenarios and reports use
  DESCRIPTION  one line: the invariant
  PENDING      None, or why it cannot run yet (the capability it checks has not landed)
  check(run)   takes a harness.rundata.RunData, returns a Result

A pending checker has no check(); it is listed by `chaos/run --list` and a scenario that
needs it is pending too. To land one, fill in check() and set PENDING = None.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

# Registry, in the order checkers run and reports list them.
MODULES = [
    "membership_convergence",
    "membership_detection",
    "false_downs",
    "process_health",
    "clock_skew",
    "groups_names",
    "sends",
    "claims",
    "strong_names",
    "leader",
    "identity",
]


@dataclass
class Result:
    name: str
    violations: list[dict] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def violation(self, kind: str, message: str, **fields) -> None:
        self.violations.append({"checker": self.name, "kind": kind, "message": message,
                                **fields})


def all_checkers() -> list:
    return [importlib.import_module(f"checkers.{m}") for m in MODULES]


def landed() -> list:
    return [c for c in all_checkers() if not c.PENDING]


def get(name: str):
    for c in all_checkers():
        if c.NAME == name:
            return c
    raise KeyError(f"unknown checker {name!r}; have: "
                   + ", ".join(c.NAME for c in all_checkers()))
