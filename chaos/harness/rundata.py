"""Everything a run recorded, handed to every checker after the scenario."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunData:
    scenario: str                     # slug, e.g. "01-partition-halves"
    nodes: list[str]
    bounds: dict
    events: list[dict]                # recorder events, oracle time in seconds
    observations: list[dict]          # /v1/members polls, sorted by t_done
    metric_samples: list[dict] = field(default_factory=list)
    last_metrics: dict = field(default_factory=dict)   # (node, pid) -> {series: value}
    rss_max_kb: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    poll_failures: list[dict] = field(default_factory=list)
    injected_drops: dict = field(default_factory=dict)
    log_dir: Path | None = None
    poll_interval: float = 0.25
    status: str = "completed"
    registry_observations: list[dict] = field(default_factory=list)  # sorted by t_done

    def events_of(self, *kinds: str) -> list[dict]:
        return [e for e in self.events if e["kind"] in kinds]
