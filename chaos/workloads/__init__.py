"""Workloads: client activity run from the root namespace against the agents' admin APIs.

A workload module defines
  NAME, DESCRIPTION
  PENDING      None, or why it cannot run yet
  Workload     a class: Workload(ctx) with start(), stop() and operations() ->
               {"attempted", "succeeded", "failed", "indeterminate"}; every invocation and
               completion is recorded with ctx.recorder (oracle clock) so checkers can
               rebuild the history. ctx has .cluster, .recorder, .observer.

A scenario lists the workloads it needs; one that needs a pending workload is pending.
"""

from __future__ import annotations

import importlib

MODULES = [
    "membership",
    "groups",
    "sends",
    "names",
    "claims",
    "strong_names",
    "leader",
]


def all_workloads() -> list:
    return [importlib.import_module(f"workloads.{m}") for m in MODULES]


def get(name: str):
    for w in all_workloads():
        if w.NAME == name:
            return w
    raise KeyError(f"unknown workload {name!r}; have: "
                   + ", ".join(w.NAME for w in all_workloads()))
