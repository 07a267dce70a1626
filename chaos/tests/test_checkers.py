"""Checkers on synthetic histories: each must pass what is fine and catch what is not."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from ._fixtures import (NODES, all_alive, converge_event, poll, polls, run, start_events,
                        view)

import checkers  # noqa: E402  (path set up by _fixtures)
from checkers import (clock_skew, false_downs, membership_convergence,  # noqa: E402
                      membership_detection, process_health)
from harness.views import convergence_problems, first_converged, reduce_members  # noqa: E402


def split(n: str, t: float) -> dict:
    """n1 | n2,n3 partition views."""
    if n == "n1":
        return view("n1", {"n1": "alive", "n2": "down", "n3": "down"})
    return view(n, {"n1": "down", "n2": "alive", "n3": "alive"})


class Views(unittest.TestCase):
    def test_reduce_members_keeps_the_highest_incarnation_of_a_name(self):
        v = reduce_members([
            {"name": "n1", "incarnation": 5, "state": "alive", "is_self": True,
             "age_seconds": 1.5},
            {"name": "n2", "incarnation": 1, "state": "down"},
            {"name": "n2", "incarnation": 2, "state": "alive"},
        ])
        self.assertEqual(v["m"]["n2"], ["alive", 2])
        self.assertEqual((v["self"], v["inc"], v["age"]), ("n1", 5, 1.5))

    def test_an_agent_that_sees_only_itself_is_reported_isolated(self):
        views = {n: split(n, 0) for n in NODES}
        problems = convergence_problems(views, NODES)
        self.assertTrue(any("n1: isolated" in p for p in problems), problems)

    def test_disagreeing_incarnations_are_not_converged(self):
        views = {n: all_alive(n) for n in NODES}
        views["n2"] = all_alive("n2", inc={"n3": 299})
        problems = convergence_problems(views, NODES)
        self.assertTrue(any("incarnation 299" in p for p in problems), problems)

    def test_a_dead_node_shown_alive_is_not_converged(self):
        views = {n: all_alive(n) for n in ["n1", "n2"]}
        self.assertTrue(convergence_problems(views, ["n1", "n2"]))

    def test_convergence_must_hold_for_the_stable_window(self):
        # Converged from t=10 to t=12, then n1 sees n2 suspect: not stable for 5 s.
        obs = polls(10, 12, lambda n, t: all_alive(n))
        obs += polls(12, 30, lambda n, t: view(n, {"n1": "alive", "n2": "suspect",
                                                   "n3": "alive"}))
        t, _ = first_converged(sorted(obs, key=lambda o: o["t_done"]), NODES, 10, 20, 5)
        self.assertIsNone(t)
        obs2 = polls(10, 20, lambda n, t: all_alive(n))
        t, _ = first_converged(obs2, NODES, 10, 20, 5)
        self.assertAlmostEqual(t, 10.01, places=2)

    def test_polls_requested_before_the_heal_do_not_count(self):
        obs = polls(0, 10, lambda n, t: all_alive(n))
        t, _ = first_converged(obs, NODES, 10, 5, 1)
        self.assertIsNone(t)


class MembershipConvergence(unittest.TestCase):
    def test_passes_when_views_agree_after_heal_and_records_the_time(self):
        events = start_events() + [
            {"t": 5.0, "kind": "partition", "sides": [["n1"], ["n2", "n3"]],
             "disrupts": NODES},
            {"t": 20.0, "kind": "heal"},
            converge_event(28.0, since=20.0)]
        obs = polls(5, 22, split) + polls(22, 30, lambda n, t: all_alive(n))
        r = membership_convergence.check(run(events, obs))
        self.assertEqual(r.violations, [])
        self.assertAlmostEqual(r.details["max_converge_s"], 2.01, places=1)

    def test_fails_with_not_converged_and_isolated_when_never_healed(self):
        events = start_events() + [
            {"t": 5.0, "kind": "partition", "sides": [["n1"], ["n2", "n3"]],
             "disrupts": NODES},
            converge_event(30.0, since=5.0, bound=10, after="partition")]
        obs = polls(5, 30, split)
        r = membership_convergence.check(run(events, obs))
        kinds = {v["kind"] for v in r.violations}
        self.assertEqual(kinds, {"not_converged", "isolated"})
        self.assertEqual(r.violations[1]["nodes"], ["n1"])


class FalseDowns(unittest.TestCase):
    def _healthy_then(self, bad_from: float, bad_to: float, extra_events=()):
        events = start_events() + [converge_event(6.0, since=0.0, after="start")]
        events += list(extra_events)
        good = lambda n, t: all_alive(n)  # noqa: E731

        def make(n, t):
            if bad_from <= t < bad_to and n == "n1":
                return view("n1", {"n1": "alive", "n2": "down", "n3": "alive"})
            return good(n, t)
        return events, polls(0, 40, make)

    def test_a_down_under_loss_alone_is_a_false_down(self):
        events, obs = self._healthy_then(20, 22, [
            {"t": 10.0, "kind": "loss", "percent": 20, "disrupts": []},
            {"t": 30.0, "kind": "heal"}])
        r = false_downs.check(run(events, obs))
        self.assertEqual(r.details["poll_based"], 1)
        self.assertEqual(r.details["during_loss"], 1)
        self.assertEqual(r.violations[0]["kind"], "false_down")

    def test_a_down_of_a_killed_node_is_expected(self):
        events, obs = self._healthy_then(20, 22, [
            {"t": 19.0, "kind": "kill", "nodes": ["n2"], "disrupts": ["n2"]}])
        r = false_downs.check(run(events, obs))
        self.assertEqual(r.violations, [])

    def test_a_down_seen_by_a_partitioned_observer_is_expected(self):
        events, obs = self._healthy_then(20, 22, [
            {"t": 19.0, "kind": "isolate", "node": "n1", "disrupts": ["n1"]}])
        self.assertEqual(false_downs.check(run(events, obs)).violations, [])

    def test_a_down_after_the_post_heal_convergence_is_false_again(self):
        events = start_events() + [
            converge_event(6.0, since=0.0, after="start"),
            {"t": 10.0, "kind": "partition", "sides": [["n1"], ["n2", "n3"]],
             "disrupts": NODES},
            {"t": 15.0, "kind": "heal"},
            converge_event(22.0, since=15.0)]

        def make(n, t):
            if 10 <= t < 16:
                return split(n, t)
            if 30 <= t < 31 and n == "n3":
                return view("n3", {"n1": "down", "n2": "alive", "n3": "alive"})
            return all_alive(n)
        r = false_downs.check(run(events, polls(0, 40, make)))
        self.assertEqual(r.details["poll_based"], 1)
        self.assertEqual(r.details["episodes"][0]["target"], "n1")
        self.assertAlmostEqual(r.details["episodes"][0]["t"], 30, delta=0.3)

    def test_a_silent_rejoin_of_a_healthy_node_counts(self):
        events = start_events() + [converge_event(6.0, since=0.0, after="start")]
        make = lambda n, t: all_alive(n, inc={"n2": 201}) if t >= 20 else all_alive(n)  # noqa
        r = false_downs.check(run(events, polls(0, 30, make)))
        self.assertEqual([e["kind"] for e in r.details["episodes"]], ["rejoined"])

    def test_a_rejoin_forced_by_an_isolated_nodes_verdict_is_expected(self):
        # n1 was isolated and declared n2 down; on heal n2 renews its incarnation.
        events = start_events() + [
            converge_event(6.0, since=0.0, after="start"),
            {"t": 10.0, "kind": "isolate", "node": "n1", "disrupts": ["n1"]},
            {"t": 20.0, "kind": "heal"},
            converge_event(28.0, since=20.0)]
        make = lambda n, t: all_alive(n, inc={"n2": 201}) if t >= 20.2 else all_alive(n)  # noqa
        r = false_downs.check(run(events, polls(0, 30, make)))
        self.assertEqual(r.violations, [])

    def test_a_down_while_settling_after_heal_is_expected_but_reported(self):
        # n1 was isolated; on heal its verdict makes n3 show n2 down for a moment.
        events = start_events() + [
            converge_event(6.0, since=0.0, after="start"),
            {"t": 10.0, "kind": "isolate", "node": "n1", "disrupts": ["n1"]},
            {"t": 20.0, "kind": "heal"},
            converge_event(28.0, since=20.0)]

        def make(n, t):
            if n == "n3" and 20.2 <= t < 20.6:
                return view("n3", {"n1": "alive", "n2": "down", "n3": "alive"})
            return all_alive(n)
        r = false_downs.check(run(events, polls(0, 30, make)))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["settling_downs"], 1)

    def test_metric_deltas_in_quiet_windows_count(self):
        events = start_events() + [converge_event(6.0, since=0.0, after="start")]
        samples = [{"t": float(t), "node": "n1", "pid": 1, "down": 0 if t < 20 else 2,
                    "rejoins": 0} for t in range(0, 40, 2)]
        r = false_downs.check(run(events, polls(0, 40, lambda n, t: all_alive(n)),
                                  metric_samples=samples))
        self.assertEqual(r.details["metric_based"], 2)
        self.assertEqual(r.violations[0]["kind"], "false_down_metric")


class Detection(unittest.TestCase):
    def test_not_detected_in_bound_and_same_incarnation_are_violations(self):
        events = start_events() + [
            {"t": 10.0, "kind": "pause", "nodes": ["n3"], "disrupts": ["n3"]},
            {"t": 25.1, "kind": "await_down", "node": "n3", "since": 10.0,
             "watchers": ["n1", "n2"], "bound_s": 15.0},
            {"t": 26.0, "kind": "resume", "nodes": ["n3"], "disrupts": ["n3"]},
            {"t": 30.0, "kind": "expect_new_incarnation", "node": "n3"}]
        obs = polls(0, 40, lambda n, t: all_alive(n))
        r = membership_detection.check(run(events, obs))
        self.assertEqual({v["kind"] for v in r.violations},
                         {"not_detected", "same_incarnation"})

    def test_detected_and_renewed_passes(self):
        events = start_events() + [
            {"t": 10.0, "kind": "pause", "nodes": ["n3"], "disrupts": ["n3"]},
            {"t": 14.0, "kind": "await_down", "node": "n3", "since": 10.0,
             "watchers": ["n1", "n2"], "bound_s": 15.0},
            {"t": 26.0, "kind": "resume", "nodes": ["n3"], "disrupts": ["n3"]},
            {"t": 30.0, "kind": "expect_new_incarnation", "node": "n3"}]

        def make(n, t):
            if t < 10:
                return all_alive(n)
            if t < 26:
                return view(n, {"n1": "alive", "n2": "alive", "n3": "down"})
            return all_alive(n, inc={"n3": 301})
        obs = [o for o in polls(0, 40, make) if not (o["node"] == "n3" and 10 <= o["t"] < 26)]
        r = membership_detection.check(run(events, obs))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["rejoins"], [{"node": "n3", "before": 300, "after": 301}])


class ProcessHealth(unittest.TestCase):
    def test_rss_panic_exit_and_missing_drop_counters_are_caught(self):
        with tempfile.TemporaryDirectory() as d:
            Path(d, "n2.log").write_text("thread 'tokio' panicked at src/x.rs:1:1\n")
            events = start_events() + [{"t": 5.0, "kind": "agent_exited", "node": "n3",
                                        "pid": 1, "code": 101}]
            data = run(events, [], rss_max_kb={"n1": 300 * 1024, "n2": 10 * 1024},
                       last_metrics={("n1", 1): {
                           'mesh_transport_datagrams_dropped_total{reason="x"}': 3.0}},
                       log_dir=Path(d))
            r = process_health.check(data)
        kinds = sorted(v["kind"] for v in r.violations)
        self.assertEqual(kinds, ["drop_counters_missing", "panic", "rss", "unexpected_exit"])
        self.assertEqual(r.details["drops_by_reason"],
                         {'mesh_transport_datagrams_dropped_total{reason="x"}': 3.0})

    def test_an_admin_api_that_stops_answering_is_caught(self):
        obs = [dict(poll(t / 4, "n1", all_alive("n1")), ok=False, outcome="indeterminate")
               for t in range(0, 40)]
        r = process_health.check(run(start_events(), obs))
        self.assertEqual([v["kind"] for v in r.violations], ["admin_unresponsive"])


class ClockSkew(unittest.TestCase):
    def test_measured_rate_must_match_the_configured_one(self):
        events = [{"t": 0.0, "kind": "start", "nodes": NODES, "pids": {n: 1 for n in NODES},
                   "skews": {"n1": 2.0, "n2": 0.5}, "disrupts": NODES}]
        rates = {"n1": 2.0, "n2": 1.0, "n3": 1.0}  # n2's skew did not take
        obs = polls(0, 30, lambda n, t: all_alive(n, age=t * rates[n]))
        r = clock_skew.check(run(events, obs))
        self.assertEqual([v["node"] for v in r.violations], ["n2"])
        got = {x["node"]: x["measured"] for x in r.details["lives"]}
        self.assertAlmostEqual(got["n1"], 2.0, places=2)


class Registries(unittest.TestCase):
    def test_pending_checkers_say_why_and_have_no_check(self):
        for c in checkers.all_checkers():
            if c.PENDING:
                self.assertIn("issue", c.PENDING)
                self.assertFalse(hasattr(c, "check"))
            else:
                self.assertTrue(callable(c.check))

    def test_scenarios_load_and_claims_scenarios_are_pending(self):
        from harness.scenario import all_scenarios
        by_num = {s.number: s for s in all_scenarios()}
        for n in (1, 2, 3, 4, 5, 8, 9):
            self.assertIsNone(by_num[n].pending, n)
        for n in (6, 7):
            self.assertIn("issue 4", by_num[n].pending)
        self.assertTrue(by_num[90].control and by_num[91].control)

    def test_every_scenario_step_is_known(self):
        from harness.scenario import all_scenarios
        from harness.steps import Steps

        def names(steps):
            for s in steps:
                yield s[0]
                if s[0] == "foreach":
                    yield from names(s[2])
        for scn in all_scenarios():
            for name in names(scn.steps):
                self.assertTrue(hasattr(Steps, f"step_{name}"), f"{scn.slug}: {name}")

    def test_selectors(self):
        from harness.steps import resolve
        five = ["n1", "n2", "n3", "n4", "n5"]
        self.assertEqual(resolve(five, "half1"), ["n1", "n2"])
        self.assertEqual([resolve(five, f"third{i}") for i in (1, 2, 3)],
                         [["n1", "n2"], ["n3"], ["n4", "n5"]])
        self.assertEqual(resolve(five, "others:n3"), ["n1", "n2", "n4", "n5"])


if __name__ == "__main__":
    unittest.main()
