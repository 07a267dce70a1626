"""The leader checker (chaos/checkers/leader.py) on synthetic histories: no agents."""

from __future__ import annotations

import unittest

from ._fixtures import run

from checkers import leader  # noqa: E402  (path set up by _fixtures)

TTL = 10.0
BOUND = TTL * (1 + leader.RHO) + TTL / 4 + leader.FAILOVER_SLACK_S


class History:
    """A leader-workload history built event by event, in time order."""

    def __init__(self) -> None:
        self.ev: list[dict] = [{"t": 0.0, "kind": "leader_config", "ttl_s": TTL,
                                "election": "demo"}]
        self.seq = 0
        self.highest = 0
        for i, n in enumerate(["n1", "n2", "n3"]):
            self.ev.append({"t": 0.0, "kind": "elect_start", "node": n, "mpid": 10 + i})

    def mpid(self, node: str) -> int:
        return {"n1": 10, "n2": 11, "n3": 12}[node]

    def lead(self, node: str, token: int, t0: float, t1: float, *, write_early=False,
             exited=True) -> "History":
        """A term of `node` with `token` over [t0, t1], writing every 0.2 s inside it."""
        m = self.mpid(node)
        if write_early:
            self.write(node, token, t0 - 0.05)
        self.ev.append({"t": t0, "kind": "elect_event", "node": node, "mpid": m,
                        "event": "leader", "token": token})
        t = t0 + 0.1
        while t < t1:
            self.write(node, token, t)
            t += 0.2
        if exited:
            self.ev.append({"t": t1, "kind": "elect_event", "node": node, "mpid": m,
                            "event": "exited", "token": token})
        else:
            self.ev.append({"t": t1, "kind": "elect_exit", "node": node, "mpid": m,
                            "code": 1})
        return self

    def write(self, node: str, token: int, t: float) -> "History":
        self.seq += 1
        accepted = token >= self.highest
        self.highest = max(self.highest, token) if accepted else self.highest
        self.ev.append({"t": round(t, 3), "kind": "fence_write", "task": "elect/demo",
                        "node": node, "token": token, "seq": self.seq,
                        "accepted": accepted})
        return self

    def fault(self, node: str, token: int, t: float, kind: str = "pause") -> "History":
        self.ev.append({"t": t, "kind": "leader_fault", "node": node, "token": token,
                        "fault": kind})
        return self

    def check(self, **bounds):
        r = run(sorted(self.ev, key=lambda e: e["t"]), [])
        r.bounds.update(bounds)
        return leader.check(r)


def kinds(res) -> set[str]:
    return {v["kind"] for v in res.violations}


class Leader(unittest.TestCase):
    def test_disjoint_terms_with_rising_tokens_and_failovers_in_time_pass(self):
        h = (History().lead("n1", 5, 1.0, 10.0).fault("n1", 5, 9.0)
             .lead("n2", 8, 9.0 + BOUND - 1, 40.0).fault("n2", 8, 39.0, "kill")
             .lead("n3", 12, 45.0, 60.0, write_early=True))
        res = h.check(leader_min_failovers=2)
        self.assertEqual(res.violations, [], res.violations)
        self.assertEqual(res.details["terms"], 3)
        self.assertEqual(res.details["faults_regained"], 2)
        self.assertEqual(res.details["tokens"], [5, 8, 12])

    def test_overlapping_terms_of_two_nodes_are_two_leaders(self):
        h = History().lead("n1", 5, 1.0, 10.0).lead("n2", 8, 9.0, 20.0)
        self.assertIn("leaders_overlap", kinds(h.check()))

    def test_a_later_term_with_a_lower_token_is_caught(self):
        h = History().lead("n1", 8, 1.0, 10.0).lead("n2", 5, 11.0, 20.0)
        res = h.check()
        self.assertIn("token_not_increasing", kinds(res))
        # n2's writes with 5 after 8 was accepted are refused, so the fence stays clean
        self.assertNotIn("stale_token_accepted", kinds(res))

    def test_the_same_node_re_leading_on_its_claim_may_keep_its_token(self):
        h = History().lead("n1", 5, 1.0, 10.0).lead("n1", 5, 11.0, 20.0)
        self.assertEqual(h.check().violations, [])

    def test_a_write_after_the_term_ended_is_an_effect_outside_the_term(self):
        h = History().lead("n1", 5, 1.0, 10.0).write("n1", 5, 10.5)
        res = h.check()
        self.assertEqual(kinds(res), {"effect_outside_term"})
        self.assertEqual(res.violations[0]["writes"], 1)

    def test_a_write_within_the_in_flight_slack_is_inside(self):
        h = History().lead("n1", 5, 1.0, 10.0).write("n1", 5, 10.0 + leader.EFFECT_SLACK_S / 2)
        self.assertEqual(h.check().violations, [])

    def test_a_term_ended_by_the_meshctl_exit_counts_as_ended(self):
        h = History().lead("n1", 5, 1.0, 10.0, exited=False).write("n1", 5, 12.0)
        self.assertEqual(kinds(h.check()), {"effect_outside_term"})

    def test_a_stale_token_accepted_by_the_fence_is_caught(self):
        h = History().lead("n1", 8, 1.0, 10.0)
        h.ev.append({"t": 11.0, "kind": "fence_write", "task": "elect/demo", "node": "n1",
                     "token": 5, "seq": 999, "accepted": True})
        self.assertIn("stale_token_accepted", kinds(h.check()))

    def test_a_failover_slower_than_the_bound_is_not_regained(self):
        h = (History().lead("n1", 5, 1.0, 10.0).fault("n1", 5, 9.0)
             .lead("n2", 8, 9.0 + BOUND + 1, 40.0))
        res = h.check()
        self.assertEqual(kinds(res), {"leadership_not_regained"})
        self.assertGreater(res.violations[0]["took_s"], BOUND)

    def test_no_leader_after_a_fault_is_not_regained(self):
        h = History().lead("n1", 5, 1.0, 10.0).fault("n1", 5, 9.0)
        self.assertIn("leadership_not_regained", kinds(h.check()))

    def test_too_few_terms_and_failovers_are_reported(self):
        h = History()
        self.assertEqual(kinds(h.check(leader_min_failovers=1)),
                         {"too_few_terms", "too_few_failovers"})

    def test_a_run_without_the_workload_has_nothing_to_judge(self):
        res = leader.check(run([{"t": 0.0, "kind": "start"}], []))
        self.assertEqual(res.violations, [])


if __name__ == "__main__":
    unittest.main()
