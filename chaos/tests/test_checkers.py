"""Checkers on synthetic histories: each must pass what is fine and catch what is not."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

from ._fixtures import (NODES, all_alive, converge_event, listener, pid_of, poll, polls,
                        registry_check, rpolls, run, rview, start_events, view)

import checkers  # noqa: E402  (path set up by _fixtures)
from checkers import (claims, clock_skew, false_downs, groups_names,  # noqa: E402
                      membership_convergence, membership_detection, process_health, sends,
                      strong_names)
from harness.registry import History, pid_key, winner_key  # noqa: E402
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

    def test_a_killed_agents_last_refusal_and_its_restarts_first_are_not_one_outage(self):
        # Found in clock-skew-claims: one refused poll just as n1 was killed (pid 1),
        # none while it was down, one just after its restart (pid 2) before it listened:
        # 8 s apart, but two different lives.
        refused = {"ok": False, "outcome": "failed", "err": "Connection refused"}
        obs = ([poll(t / 4, "n1", all_alive("n1")) for t in range(0, 40)]
               + [dict(poll(10.0, "n1", {}), **refused),
                  dict(poll(18.0, "n1", {}, pid=2), **refused)]
               + [poll(18.25 + t / 4, "n1", all_alive("n1"), pid=2) for t in range(0, 8)])
        r = process_health.check(run(start_events(), obs))
        self.assertEqual(r.violations, [])
        # The same two refusals from one life are an outage.
        same = [dict(o, pid=1) for o in obs]
        r = process_health.check(run(start_events(), same))
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


def kinds(r) -> set[str]:
    return {v["kind"] for v in r.violations}


# Three listeners: L1 on n1 in g0, L2 on n2 in g0 and (twice) g1, L3 on n3 in g1, closed
# at t=8 (its leave confirmed at 9).
P1, P2, P3 = pid_of("n1", 1), pid_of("n2", 2), pid_of("n3", 3)


def three_listeners() -> list[dict]:
    return (start_events() + listener("L1", "n1", 5.0, ["g0"])
            + listener("L2", "n2", 5.1, ["g0", "g1", "g1"])
            + listener("L3", "n3", 5.2, ["g1"])
            + [{"t": 8.0, "kind": "unlisten", "lid": "L3"},
               {"t": 9.0, "kind": "unlisten_ok", "lid": "L3", "confirmed": True}])


GOOD = {"default/g0": {P1: 1, P2: 1}, "default/g1": {P2: 2}}


class GroupsNames(unittest.TestCase):
    def _check(self, events, make, t0=10.0, t1=16.0, live=NODES):
        events = events + [registry_check(t1, since=t0, live=live)]
        return groups_names.check(run(events, [], registry_observations=rpolls(
            t0, t1, make, nodes=live)))

    def test_identical_views_that_match_the_open_listeners_pass(self):
        r = self._check(three_listeners(), lambda n, t: rview(GOOD))
        self.assertEqual(r.violations, [])
        self.assertTrue(r.details["checks"][0]["ok"])
        self.assertEqual(r.details["checks"][0]["absent"], {"closed by the workload": 1})

    def test_an_open_listener_missing_on_one_agent_is_lost_without_reason(self):
        lacking = {"default/g0": {P1: 1}, "default/g1": {P2: 2}}
        r = self._check(three_listeners(),
                        lambda n, t: rview(lacking if n == "n3" else GOOD))
        self.assertEqual(kinds(r), {"views_differ", "lost_without_reason"})
        lost = next(v for v in r.violations if v["kind"] == "lost_without_reason")
        self.assertEqual([(p["lid"], p["nodes"]) for p in lost["problems"]],
                         [("L2", ["n3"])])

    def test_a_closed_listener_still_shown_everywhere_is_not_removed(self):
        stale = {**GOOD, "default/g1": {P2: 2, P3: 1}}
        r = self._check(three_listeners(), lambda n, t: rview(stale))
        self.assertEqual(kinds(r), {"not_removed"})
        self.assertIn("L3", r.violations[0]["message"])

    def test_a_listener_that_joined_a_group_twice_must_be_counted_twice(self):
        once = {**GOOD, "default/g1": {P2: 1}}
        r = self._check(three_listeners(), lambda n, t: rview(once))
        self.assertEqual(kinds(r), {"lost_without_reason"})
        self.assertIn("joined 2x, shown 1x", r.violations[0]["message"])

    def test_views_that_converge_only_after_the_bound_are_not_converged(self):
        lacking = {"default/g0": {P1: 1}, "default/g1": {P2: 2}}
        events = three_listeners() + [registry_check(40.0, since=10.0, bound=5.0)]
        obs = rpolls(10, 40, lambda n, t: rview(GOOD if t >= 20 else lacking))
        r = groups_names.check(run(events, [], registry_observations=obs))
        self.assertIn("lost_without_reason", kinds(r))
        events[-1]["bound_s"] = 20.0
        r = groups_names.check(run(events, [], registry_observations=obs))
        self.assertEqual(r.violations, [])
        self.assertAlmostEqual(r.details["checks"][0]["took_s"], 10.0, delta=0.1)

    def test_views_compared_during_a_partition_differ(self):
        def split_view(n, t):
            if n == "n1":
                return rview({"default/g0": {P1: 1}})
            return rview({"default/g0": {P2: 1}, "default/g1": {P2: 2}})
        r = self._check(three_listeners(), split_view)
        self.assertIn("views_differ", kinds(r))
        differ = next(v for v in r.violations if v["kind"] == "views_differ")
        self.assertIn("default/g0: n1 L1x1; n2+n3 L2x1", differ["message"])

    def test_a_listener_on_a_killed_agent_is_absent_with_reason_node_down(self):
        events = three_listeners() + [
            {"t": 9.5, "kind": "kill", "nodes": ["n2"], "disrupts": ["n2"]},
            {"t": 9.49, "kind": "listen_ended", "lid": "L2", "reason": "eof"}]
        events.sort(key=lambda e: e["t"])
        r = self._check(events, lambda n, t: rview({"default/g0": {P1: 1}}),
                        live=["n1", "n3"])
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["streams_ended_by_faults"], {"node down (kill)": 1})

    def test_a_listener_on_a_restarted_agent_must_be_gone_even_if_its_stream_seems_open(self):
        events = three_listeners() + [{"t": 9.5, "kind": "restart", "nodes": ["n2"],
                                       "pids": {"n2": 2}, "disrupts": ["n2"]}]
        r = self._check(events, lambda n, t: rview(GOOD))
        self.assertEqual(kinds(r), {"not_removed"})

    def test_a_stream_that_ends_without_a_close_or_a_fault_is_lost(self):
        events = three_listeners() + [{"t": 9.5, "kind": "listen_ended", "lid": "L1",
                                       "reason": "eof"}]
        r = self._check(events, lambda n, t: rview({"default/g1": {P2: 2},
                                                    "default/g0": {P2: 1}}))
        self.assertEqual(kinds(r), {"stream_lost"})

    def test_a_name_must_be_held_by_its_open_claim_on_every_agent(self):
        events = start_events() + listener("L1", "n1", 5.0, name="nm1", hlc="1000.0")
        r = self._check(events, lambda n, t: rview(names={"nm1": P1} if n != "n2" else {}))
        self.assertEqual(kinds(r), {"views_differ", "lost_without_reason"})

    def test_without_a_groups_or_names_workload_there_is_nothing_to_judge(self):
        r = groups_names.check(run(start_events(), []))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.notes, ["no groups or names workload in this run"])


# A conflict round: "cf" claimed by L1 on n1 and L4 on n3 while partitioned.
PA, PB = pid_of("n1", 1), pid_of("n3", 4)


def conflict(hlc_a: str, hlc_b: str, notices: dict[str, list[str]]) -> list[dict]:
    evs = (start_events() + listener("L1", "n1", 5.0, name="cf", hlc=hlc_a)
           + listener("L4", "n3", 5.1, name="cf", hlc=hlc_b)
           + [{"t": 5.2, "kind": "conflict_round", "round": 1, "names": ["cf"],
               "sides": [["n1"], ["n2", "n3"]], "claims": {"cf": ["L1", "L4"]}}])
    for lid, winners in notices.items():
        evs += [{"t": 12.0, "kind": "name_conflict", "lid": lid, "name": "cf",
                 "winner": w} for w in winners]
    return sorted(evs, key=lambda e: e["t"])


class NameConflicts(unittest.TestCase):
    def _check(self, events, holder):
        make = holder if callable(holder) else (lambda n, t: rview(names={"cf": holder}))
        events = events + [registry_check(20.0, since=14.0)]
        return groups_names.check(run(events, [], registry_observations=rpolls(
            14, 20, make)))

    def test_the_earliest_hlc_wins_and_the_loser_gets_exactly_one_notice(self):
        r = self._check(conflict("1000.0", "999.5", {"L1": [PB]}), PB)
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["conflicts"][0]["winner"], PB)

    def test_the_logical_counter_orders_equal_wall_clocks(self):
        r = self._check(conflict("1000.3", "1000.2", {"L1": [PB]}), PB)
        self.assertEqual(r.violations, [])

    def test_equal_hlcs_are_broken_by_the_lowest_node_name(self):
        r = self._check(conflict("1000.0", "1000.0", {"L4": [PA]}), PA)
        self.assertEqual(r.violations, [])
        self.assertLess(winner_key((1000, 0), PA), winner_key((1000, 0), PB))
        self.assertLess(pid_key("n1/9/1"), pid_key("n1/10/1"))  # numbers, not text

    def test_a_holder_that_is_not_the_first_claim_is_the_wrong_winner(self):
        # The agents agree with each other and told L4 it lost, but L4 claimed first.
        r = self._check(conflict("1000.0", "999.0", {"L4": [PA]}), PA)
        self.assertEqual(kinds(r), {"conflict_winner", "conflict_notice"})
        self.assertEqual(r.details["conflicts"][0]["winner"], PB)

    def test_a_loser_without_a_notice_fails(self):
        r = self._check(conflict("1000.0", "999.5", {}), PB)
        self.assertEqual(kinds(r), {"conflict_notice"})

    def test_a_loser_told_twice_fails(self):
        r = self._check(conflict("1000.0", "999.5", {"L1": [PB, PB]}), PB)
        self.assertEqual(kinds(r), {"conflict_notice"})

    def test_a_notice_naming_another_winner_or_sent_to_the_winner_fails(self):
        r = self._check(conflict("1000.0", "999.5", {"L1": [PA]}), PB)
        self.assertEqual(kinds(r), {"conflict_notice"})
        r = self._check(conflict("1000.0", "999.5", {"L1": [PB], "L4": [PB]}), PB)
        # Both claims were told they lost, so the name must be gone: it is still shown.
        self.assertEqual(kinds(r), {"conflict_notice", "not_removed"})

    def test_agents_showing_different_holders_have_no_single_winner(self):
        r = self._check(conflict("1000.0", "999.5", {"L1": [PB]}),
                        lambda n, t: rview(names={"cf": PB if n != "n1" else PA}))
        self.assertIn("conflict_winner", kinds(r))
        self.assertIn("views_differ", kinds(r))

    def test_an_unknown_hlc_leaves_the_order_unchecked_never_guessed(self):
        r = self._check(conflict("1000.0", None, {"L1": [PB]}), PB)
        self.assertEqual(r.violations, [])
        self.assertTrue(any("HLC is unknown" in n for n in r.notes), r.notes)


# Sends: L1 on n1 and L2 on n2 in g0, L3 on n3 in g1; sends go through n1.
def send(sid: str, t: float, done_t: float, target="g0", dest="group", status=200,
         delivered=None, timed_out=(), error=None, mode="all", seq=None, failed=()):
    s = {"t": t, "kind": "send", "sid": sid, "via": "n1", "via_pid": 1,
         "seq": seq if seq is not None else int(sid.split(".")[1]), "dest": dest,
         "target": target, "scope": "default" if dest == "group" else None,
         "mode": mode if dest == "group" else None, "payload": f"chaos {sid}"}
    d = {"t": done_t, "kind": "send_done", "sid": sid, "status": status,
         "outcome": "ok" if status == 200 else "indeterminate" if status in (504, None)
         else "failed"}
    if status == 200:
        d.update(delivered=delivered, remote_nodes=1, failed=list(failed),
                 timed_out=list(timed_out))
    else:
        d["error"] = error
    return [s, d]


def recv(lid: str, sid: str, t: float, seq: int = 1) -> dict:
    return {"t": t, "kind": "recv", "lid": lid, "seq": seq, "payload": f"chaos {sid}",
            "from": None}


def sends_run(*extra, end: float = 60.0, metrics=None, samples=None):
    evs = (start_events() + listener("L1", "n1", 5.0, ["g0"]) + listener("L2", "n2", 5.1,
                                                                         ["g0"])
           + listener("L3", "n3", 5.2, ["g1"]))
    for e in extra:
        evs += e if isinstance(e, list) else [e]
    evs.append({"t": end, "kind": "hold", "seconds": 1})
    evs.sort(key=lambda e: e["t"])
    return sends.check(run(evs, [], last_metrics=metrics or {},
                           metric_samples=samples or []))


class Sends(unittest.TestCase):
    def test_a_send_read_by_exactly_the_members_it_counted_passes(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      recv("L2", "n1.1", 10.04))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["decided_exactly"], 1)

    def test_a_payload_read_twice_is_a_duplicate(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      recv("L2", "n1.1", 10.04), recv("L2", "n1.1", 10.5, seq=2))
        self.assertEqual(kinds(r), {"duplicate_delivery"})

    def test_more_readers_than_the_answer_counted_is_over_delivered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=1), recv("L1", "n1.1", 10.02),
                      recv("L2", "n1.1", 10.04))
        self.assertEqual(kinds(r), {"over_delivered"})

    def test_fewer_readers_than_counted_in_a_quiet_window_is_under_delivered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02))
        self.assertEqual(kinds(r), {"under_delivered"})

    def test_a_candidate_closing_right_after_the_send_makes_it_undecidable(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      {"t": 11.0, "kind": "unlisten", "lid": "L2"})
        self.assertEqual(r.violations, [])
        self.assertEqual((r.details["decided_exactly"], r.details["not_decidable"]), (0, 1))

    def test_a_closed_listener_may_take_messages_until_its_close_is_confirmed(self):
        events = [{"t": 9.0, "kind": "unlisten", "lid": "L2"},
                  {"t": 11.5, "kind": "unlisten_ok", "lid": "L2", "confirmed": True}]
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      events)
        self.assertEqual(r.violations, [])
        # Once the close is confirmed before the send, the window is decidable again.
        events[1]["t"] = 9.5
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      events)
        self.assertEqual(kinds(r), {"under_delivered"})

    def test_a_paused_candidate_agent_makes_the_send_undecidable(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), recv("L1", "n1.1", 10.02),
                      {"t": 10.5, "kind": "pause", "nodes": ["n2"], "disrupts": ["n2"]})
        self.assertEqual(r.violations, [])

    def test_timed_out_nodes_bound_the_readers_instead_of_fixing_them(self):
        r = sends_run(send("n1.1", 10, 15.0, delivered=1, timed_out=["n2"]),
                      recv("L1", "n1.1", 10.02), recv("L2", "n1.1", 14.0))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["decided_exactly"], 0)

    def test_a_group_payload_read_by_a_non_member_is_misdelivered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=3), recv("L1", "n1.1", 10.02),
                      recv("L2", "n1.1", 10.03), recv("L3", "n1.1", 10.04))
        self.assertEqual(kinds(r), {"misdelivered"})

    def test_a_local_send_read_on_another_agent_is_misdelivered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=1, mode="local"),
                      recv("L1", "n1.1", 10.02), recv("L2", "n1.1", 10.03))
        self.assertIn("misdelivered", kinds(r))

    def test_a_payload_nobody_sent_or_read_before_its_send_is_misdelivered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=1, target=P1, dest="pid"),
                      recv("L1", "n1.1", 10.02),
                      {"t": 10.5, "kind": "recv", "lid": "L1", "seq": 2,
                       "payload": "chaos n9.1"})
        self.assertEqual(kinds(r), {"misdelivered"})
        r = sends_run(send("n1.1", 10, 10.05, delivered=1, target=P1, dest="pid"),
                      recv("L1", "n1.1", 9.0))
        self.assertIn("misdelivered", kinds(r))

    def test_a_refused_send_that_arrived_anyway_is_a_violation(self):
        r = sends_run(send("n1.1", 10, 10.05, status=404, target=P1, dest="pid",
                           error=f"no such process: {P1}"), recv("L1", "n1.1", 10.02))
        self.assertEqual(kinds(r), {"delivered_after_refusal"})

    def test_a_timeout_is_indeterminate_and_only_the_always_checks_apply(self):
        r = sends_run(send("n1.1", 10, 20.0, status=504, target=P2, dest="pid",
                           error="node n2 did not confirm delivery in time"),
                      recv("L2", "n1.1", 12.0))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["indeterminate"], 1)

    def test_two_sends_through_one_agent_read_in_reverse_order_are_reordered(self):
        r = sends_run(send("n1.1", 10, 10.05, delivered=2), send("n1.2", 10.1, 10.15,
                                                                 delivered=2),
                      recv("L1", "n1.1", 10.02), recv("L1", "n1.2", 10.12, seq=2),
                      recv("L2", "n1.2", 10.13), recv("L2", "n1.1", 10.14, seq=2))
        self.assertEqual(kinds(r), {"reordered"})
        self.assertEqual(r.violations[0]["lid"], "L2")

    def test_refusals_the_agent_did_not_count_are_uncounted_drops(self):
        refused = [send(f"n1.{i}", 10 + i, 10.05 + i, status=404, target="g2",
                        error='group "g2" in scope "default" has no member to send to')
                   for i in (1, 2)]
        counter = 'mesh_send_errors_total{reason="empty_group"}'
        r = sends_run(*refused, metrics={("n1", 1): {counter: 1.0}})
        self.assertEqual(kinds(r), {"uncounted_drop"})
        r = sends_run(*refused, metrics={("n1", 1): {counter: 2.0}})
        self.assertEqual(r.violations, [])
        r = sends_run(*refused, metrics={("n1", 1): {"mesh_other_total": 0.0}})
        self.assertEqual(r.violations, [])
        self.assertTrue(any("not exported" in n for n in r.notes), r.notes)

    def test_a_remote_refusal_must_be_counted_by_the_refusing_agent(self):
        refused = [send("n1.1", 10, 10.05, delivered=1, failed=[
                       {"pid": pid_of("n2", 9), "reason": "no_process"}]),
                   recv("L1", "n1.1", 10.02),
                   send("n1.2", 11, 11.05, status=404, target=pid_of("n3", 9), dest="pid",
                        error=f"{pid_of('n3', 9)} refused the message: mailbox_full")]
        counted = {("n2", 1): {'mesh_process_refused_total{reason="no_process"}': 1.0},
                   ("n3", 1): {'mesh_process_refused_total{reason="mailbox_full"}': 0.0}}
        r = sends_run(*refused, metrics=counted)
        self.assertEqual([(v["kind"], v["node"]) for v in r.violations],
                         [("uncounted_drop", "n3")])
        # Snapshot taken within a second of the refusal (just before a kill, say): the
        # agent may not have published it yet.
        r = sends_run(*refused, metrics=counted, samples=[
            {"t": 11.5, "node": "n3", "pid": 1, "down": 0, "suspect": 0, "rejoins": 0}])
        self.assertEqual(r.violations, [])

    def test_error_answers_map_to_the_senders_metric_reasons(self):
        self.assertEqual(sends.error_reason("no such process: n1/1/2"), "no_process")
        self.assertEqual(sends.error_reason('no process is registered as "x"'),
                         "no_such_name")
        self.assertEqual(sends.error_reason("node n3 is not reachable (not a live "
                                            "member)"), "node_down")
        self.assertEqual(sends.error_reason("the mailbox of n1/1/2 is full"),
                         "mailbox_full")
        self.assertIsNone(sends.error_reason("n2/1/2 refused the message: no_process"))


# -- claims and strong names (event kinds: workloads/claims.py, workloads/strong_names.py) ---
_K = iter(range(1, 1_000_000))


def grant(node: str, task: str, token: int, t_send: float, valid: float = 2.0,
          took: float = 0.05) -> list[dict]:
    """A claim call that granted (or renewed) `token`, with its validity window."""
    k = next(_K)
    cid = f"c-{node}"
    return [{"t": t_send, "kind": "claim", "k": k, "cid": cid, "node": node, "task": task,
             "ttl_ms": 2000, "t_send": t_send},
            {"t": t_send + took, "at": t_send + took, "kind": "claim_done", "k": k,
             "cid": cid, "node": node,
             "task": task, "status": 200, "outcome": "ok", "token": token,
             "valid_for_ms": int(valid * 1000), "window": [t_send, t_send + valid]}]


def release(node: str, task: str, token: int, t_send: float) -> list[dict]:
    k = next(_K)
    return [{"t": t_send, "kind": "claim_release", "k": k, "cid": f"c-{node}", "node": node,
             "task": task, "token": token, "t_send": t_send},
            {"t": t_send + 0.05, "kind": "claim_release_done", "k": k, "status": 200,
             "outcome": "ok"}]


def fence(seq: int, t: float, node: str, task: str, token: int, accepted: bool,
          in_window: bool = True) -> dict:
    return {"t": t, "kind": "fence_write", "seq": seq, "cid": f"c-{node}", "node": node,
            "task": task, "token": token, "accepted": accepted, "in_window": in_window}


def claims_run(events, **bounds) -> "RunData":
    r = run(sorted(events, key=lambda e: e["t"]), [])
    r.bounds.update(bounds)
    return r


def kinds(res) -> set[str]:
    return {v["kind"] for v in res.violations}


class Claims(unittest.TestCase):
    def test_handover_after_expiry_with_increasing_tokens_and_fenced_writes_passes(self):
        ev = (grant("n1", "t1", 5, 1.0) + grant("n1", "t1", 5, 2.0)
              + grant("n2", "t1", 9, 4.5) + release("n2", "t1", 9, 5.0)
              + grant("n3", "t1", 12, 5.2)
              + [fence(1, 1.1, "n1", "t1", 5, True), fence(2, 4.6, "n2", "t1", 9, True),
                 fence(3, 4.7, "n1", "t1", 5, False, in_window=False),
                 fence(4, 5.3, "n3", "t1", 12, True), fence(5, 5.4, "n3", "t1", 12, True)])
        res = claims.check(claims_run(ev))
        self.assertTrue(res.ok, res.violations)
        self.assertEqual(res.details["grants"], 3)
        self.assertEqual(res.details["writes"]["late_refused"], 1)

    def test_windows_of_two_tokens_that_overlap_in_real_time_are_caught(self):
        # n1's renewal at 2.0 runs to 4.0; n2 had token 9 from 3.55.
        ev = grant("n1", "t1", 5, 1.0) + grant("n1", "t1", 5, 2.0) + grant("n2", "t1", 9, 3.5)
        res = claims.check(claims_run(ev))
        self.assertEqual(kinds(res), {"window_overlap"})
        self.assertIn("by 0.450s", res.violations[0]["message"])

    def test_a_release_ends_the_window_so_an_immediate_successor_does_not_overlap(self):
        ev = grant("n1", "t1", 5, 1.0) + release("n1", "t1", 5, 1.5) + grant("n2", "t1", 6, 1.6)
        self.assertTrue(claims.check(claims_run(ev)).ok)
        # Without the release the same windows overlap.
        ev = grant("n1", "t1", 5, 1.0) + grant("n2", "t1", 6, 1.6)
        self.assertEqual(kinds(claims.check(claims_run(ev))), {"window_overlap"})

    def test_a_claim_sent_before_the_release_but_answered_after_it_does_not_overlap(self):
        # n2 asks at 1.49, n1 releases at 1.5, n2's grant arrives at 1.6: n2 held the
        # token only from 1.6 (chaos/reports/07-clock-skew-claims-20261201-232453).
        ev = (grant("n1", "t1", 5, 1.0) + release("n1", "t1", 5, 1.5)
              + grant("n2", "t1", 6, 1.49, took=0.11))
        self.assertTrue(claims.check(claims_run(ev)).ok)

    def test_windows_of_one_token_may_overlap_and_other_tasks_do_not_matter(self):
        ev = (grant("n1", "t1", 5, 1.0) + grant("n1", "t1", 5, 1.5)
              + grant("n2", "t2", 6, 1.2))
        self.assertTrue(claims.check(claims_run(ev)).ok)

    def test_a_lower_token_granted_after_a_higher_one_completed_is_caught(self):
        ev = grant("n1", "t1", 9, 1.0, valid=0.5) + grant("n2", "t1", 7, 3.0, valid=0.5)
        res = claims.check(claims_run(ev))
        self.assertEqual(kinds(res), {"token_not_increasing"})

    def test_concurrent_grant_requests_may_complete_in_either_token_order(self):
        # n2's request was invoked before n1's grant completed: no real-time order.
        ev = grant("n1", "t1", 9, 1.0, valid=0.2, took=0.5) + \
            grant("n2", "t1", 7, 1.3, valid=0.1, took=0.5)
        res = claims.check(claims_run(ev))
        self.assertNotIn("token_not_increasing", kinds(res))

    def test_one_token_granted_to_two_agents_is_caught(self):
        ev = grant("n1", "t1", 9, 1.0, valid=0.5) + grant("n2", "t1", 9, 3.0, valid=0.5)
        self.assertIn("token_reused", kinds(claims.check(claims_run(ev))))

    def test_the_fence_accepting_a_token_below_one_it_accepted_is_caught(self):
        ev = grant("n1", "t1", 5, 1.0) + [fence(1, 1.1, "n2", "t1", 9, True),
                                           fence(2, 1.2, "n1", "t1", 5, True)]
        res = claims.check(claims_run(ev))
        self.assertEqual(kinds(res), {"stale_token_accepted"})

    def test_equal_tokens_are_accepted_and_the_fence_log_is_read_in_its_own_order(self):
        # Logged out of time order but in seq order 9, 9, 12: fine.
        ev = grant("n1", "t1", 5, 1.0) + [fence(2, 1.1, "n2", "t1", 9, True),
                                           fence(1, 1.2, "n2", "t1", 9, True),
                                           fence(3, 1.05, "n3", "t1", 12, True)]
        self.assertTrue(claims.check(claims_run(ev)).ok)

    def test_a_scenario_that_needs_a_refused_late_write_fails_without_one(self):
        ev = grant("n1", "t1", 5, 1.0) + [fence(1, 1.1, "n1", "t1", 5, True)]
        res = claims.check(claims_run(ev, claims_min_late_refused=1))
        self.assertEqual(kinds(res), {"no_late_write_refused"})

    def cut(self, minority_status: int, majority_status: int, t: float = 16.0) -> list:
        """Voters n1-n3, n1 | n2,n3 from 10 s to 30 s; one call on each side at t."""
        call = grant("n2", "t1", 5, t)
        call[1].update(status=majority_status, outcome="ok" if majority_status == 200
                       else "failed")
        other = grant("n1", "t2", 7, t)
        other[1].update(status=minority_status, outcome="ok" if minority_status == 200
                        else "failed")
        return ([{"t": 0.5, "kind": "voters", "voters": ["n1", "n2", "n3"]},
                 {"t": 10.0, "kind": "partition", "sides": [["n1"], ["n2", "n3"]]},
                 {"t": 30.0, "kind": "heal"}] + grant("n3", "t3", 1, 2.0) + call + other)

    def test_under_a_cut_the_minority_refuses_and_the_majority_answers(self):
        res = claims.check(claims_run(self.cut(503, 200)))
        self.assertTrue(res.ok, res.violations)
        self.assertEqual(res.details["cuts"], [{"cut_at": 10.0, "minority_503": 1,
                                                "majority_200": 1}])

    def test_a_grant_on_the_minority_side_of_a_cut_is_caught(self):
        res = claims.check(claims_run(self.cut(200, 200)))
        self.assertEqual(kinds(res), {"minority_answered"})
        # Before the cut has settled (5 s) the minority may still answer.
        self.assertTrue(claims.check(claims_run(self.cut(200, 200, t=12.0))).ok)

    def test_a_majority_side_that_only_refuses_under_a_cut_is_stalled(self):
        res = claims.check(claims_run(self.cut(503, 503)))
        self.assertEqual(kinds(res), {"majority_stalled"})

    def test_a_run_that_never_granted_a_claim_fails(self):
        ev = [{"t": 1.0, "kind": "claim", "k": 1, "cid": "c-n1", "node": "n1", "task": "t1",
               "ttl_ms": 2000, "t_send": 1.0},
              {"t": 1.01, "kind": "claim_done", "k": 1, "cid": "c-n1", "node": "n1",
               "task": "t1", "status": 503, "outcome": "failed"}]
        res = claims.check(claims_run(ev))
        self.assertEqual(kinds(res), {"too_few_grants"})
        self.assertEqual(res.details["calls"], {"failed": 1})


_O = iter(range(1, 1_000_000))


def sn(node: str, op: str, name: str, t0: float, t1: float | None, status: int | None,
       pid: str | None = None, version: int | None = None, arg: int | None = None,
       outcome: str | None = None, cached: bool = False) -> list[dict]:
    """One strong-name operation: invocation and (unless t1 is None) its completion."""
    oid = f"s{next(_O)}"
    evs = [{"t": t0, "kind": "sn", "oid": oid, "node": node, "op": op, "name": name,
            "version": arg, "cached": cached}]
    if t1 is not None:
        out = outcome or ("ok" if status == 200 else "refused" if status in (404, 409)
                          else "indeterminate" if status == 504 else "failed")
        evs.append({"t": t1, "kind": "sn_done", "oid": oid, "status": status,
                    "outcome": out, "pid": pid, "version": version})
    return evs


def sn_run(*ops) -> "RunData":
    return run(sorted([e for o in ops for e in o], key=lambda e: e["t"]), [])


P_A, P_B = "n1/7/1", "n2/7/1"


class StrongNames(unittest.TestCase):
    def test_a_sequential_register_read_release_read_history_is_linearizable(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n2", "whereis", "x", 1.2, 1.3, 200, P_A, 4),
            sn("n2", "register", "x", 1.4, 1.5, 409),
            sn("n1", "release", "x", 1.6, 1.7, 200, arg=4),
            sn("n3", "whereis", "x", 1.8, 1.9, 404),
            sn("n2", "register", "x", 2.0, 2.1, 200, P_B, 9)))
        self.assertTrue(res.ok, res.violations)
        self.assertEqual(res.details["names"]["x"]["ops"], 6)

    def test_a_read_of_the_old_owner_after_a_release_completed_is_not_linearizable(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n1", "release", "x", 1.2, 1.3, 200, arg=4),
            sn("n3", "whereis", "x", 1.4, 1.5, 200, P_A, 4)))
        self.assertEqual(kinds(res), {"not_linearizable"})
        self.assertIn("whereis", res.violations[0]["message"])

    def test_a_read_concurrent_with_the_release_may_see_either_state(self):
        for status in (200, 404):
            res = strong_names.check(sn_run(
                sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
                sn("n1", "release", "x", 1.2, 1.6, 200, arg=4),
                sn("n3", "whereis", "x", 1.3, 1.5, status, P_A if status == 200 else None,
                   4 if status == 200 else None)))
            self.assertTrue(res.ok, (status, res.violations))

    def test_two_successful_registrations_without_a_release_are_not_linearizable(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.5, 200, P_A, 4),
            sn("n2", "register", "x", 1.1, 1.4, 200, P_B, 5)))
        self.assertEqual(kinds(res), {"not_linearizable"})

    def test_taken_on_a_free_name_is_not_linearizable(self):
        res = strong_names.check(sn_run(sn("n2", "register", "x", 1.0, 1.1, 409),
                                        sn("n1", "register", "y", 1.0, 1.1, 200, P_A, 4)))
        self.assertEqual(kinds(res), {"not_linearizable"})
        self.assertEqual([v["name"] for v in res.violations], ["x"])

    def test_an_indeterminate_register_may_take_effect_later_and_is_bound_by_a_read(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 21.0, 504),
            sn("n3", "whereis", "x", 2.0, 2.1, 404),
            sn("n3", "whereis", "x", 3.0, 3.1, 200, "n1/7/3", 8),
            sn("n2", "register", "x", 3.2, 3.3, 409)))
        self.assertTrue(res.ok, res.violations)

    def test_an_indeterminate_register_cannot_explain_an_owner_on_another_node(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 21.0, 504),
            sn("n3", "whereis", "x", 3.0, 3.1, 200, "n2/7/3", 8)))
        self.assertEqual(kinds(res), {"not_linearizable"})

    def test_an_indeterminate_release_may_never_take_effect(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n1", "release", "x", 1.2, None, None, arg=4),
            sn("n3", "whereis", "x", 5.0, 5.1, 200, P_A, 4)))
        self.assertTrue(res.ok, res.violations)
        self.assertEqual(res.details["operations"]["indeterminate"], 1)

    def test_a_stale_release_needs_another_version_and_a_free_release_a_free_name(self):
        ok = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n2", "release", "x", 1.2, 1.3, 409, arg=3),
            sn("n1", "release", "x", 1.4, 1.5, 200, arg=4),
            sn("n2", "release", "x", 1.6, 1.7, 404, arg=4)))
        self.assertTrue(ok.ok, ok.violations)
        bad = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n2", "release", "x", 1.2, 1.3, 409, arg=4)))
        self.assertEqual(kinds(bad), {"not_linearizable"})

    def test_unavailable_answers_and_cached_reads_are_not_checked(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n4", "register", "x", 1.2, 1.3, 503),
            sn("n4", "whereis", "x", 1.4, 1.5, 404, cached=True)))
        self.assertTrue(res.ok, res.violations)
        self.assertEqual(res.details["operations"]["cached_reads"], 1)
        self.assertEqual(res.details["operations"]["failed"], 1)

    def test_a_linearizable_answer_on_the_minority_side_of_a_cut_is_caught(self):
        cut = [{"t": 0.5, "kind": "voters", "voters": ["n1", "n2", "n3"]},
               {"t": 10.0, "kind": "isolate", "node": "n1"}, {"t": 30.0, "kind": "heal"}]
        ops = [cut, sn("n2", "register", "x", 1.0, 1.1, 200, P_B, 4),
               sn("n2", "whereis", "x", 16.0, 16.1, 200, P_B, 4)]
        self.assertTrue(strong_names.check(sn_run(
            *ops, sn("n1", "whereis", "x", 16.0, 16.1, 503),
            sn("n1", "whereis", "x", 16.2, 16.3, 404, cached=True))).ok)
        res = strong_names.check(sn_run(*ops, sn("n1", "whereis", "x", 16.0, 16.1, 200,
                                                 P_B, 4)))
        self.assertEqual(kinds(res), {"minority_answered"})

    def test_names_are_checked_apart_and_a_violation_names_its_name(self):
        res = strong_names.check(sn_run(
            sn("n1", "register", "x", 1.0, 1.1, 200, P_A, 4),
            sn("n1", "register", "y", 1.0, 1.1, 200, P_B, 5),
            sn("n3", "whereis", "y", 1.4, 1.5, 404)))
        self.assertEqual([v["name"] for v in res.violations], ["y"])

    def test_a_long_concurrent_history_is_decided(self):
        # 5 clients, 600 operations on one name, overlapping in pairs: linearizable.
        ops, version, t = [], 0, 1.0
        for i in range(150):
            version += 1
            pid = f"n{i % 5 + 1}/7/{i}"
            ops.append(sn(f"n{i % 5 + 1}", "register", "x", t, t + 0.3, 200, pid, version))
            ops.append(sn(f"n{(i + 1) % 5 + 1}", "register", "x", t + 0.1, t + 0.35, 409))
            ops.append(sn(f"n{(i + 2) % 5 + 1}", "whereis", "x", t + 0.31, t + 0.4, 200,
                          pid, version))
            ops.append(sn(f"n{i % 5 + 1}", "release", "x", t + 0.45, t + 0.5, 200,
                          arg=version))
            t += 0.6
        res = strong_names.check(sn_run(*ops))
        self.assertTrue(res.ok, res.violations)

    def test_the_search_gives_up_loudly_rather_than_passing(self):
        ops = [strong_names.Op(f"s{i}", "n1", "register", 1.0, None, ("unknown",))
               for i in range(3)]
        ops.append(strong_names.Op("r", "n2", "whereis", 2.0, 2.1, ("owned", "n3/1/1", 1)))
        r = strong_names.linearizable(ops, max_steps=2)
        self.assertIsNone(r["ok"])


class RegistryHistory(unittest.TestCase):
    def test_expected_state_follows_joins_leaves_and_agent_lives(self):
        h = History(three_listeners())
        self.assertEqual(h.expected(7.0, NODES)["groups"]["default/g1"],
                         {P2: [2, "L2"], P3: [1, "L3"]})
        self.assertNotIn(P3, h.expected(8.0, NODES)["groups"]["default/g1"])
        self.assertEqual(h.expected(7.0, ["n1", "n3"])["groups"]["default/g0"],
                         {P1: [1, "L1"]})
        self.assertEqual(h.status(h.listeners["L2"], 7.0, ["n1"]), (False, "node down"))


class Registries(unittest.TestCase):
    def test_pending_checkers_say_why_and_have_no_check(self):
        for c in checkers.all_checkers():
            if c.PENDING:
                self.assertIn("issue", c.PENDING)
                self.assertFalse(hasattr(c, "check"))
            else:
                self.assertTrue(callable(c.check))

    def test_scenarios_load_and_claims_scenarios_are_real(self):
        from harness.scenario import all_scenarios
        by_num = {s.number: s for s in all_scenarios()}
        for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15):
            self.assertIsNone(by_num[n].pending, n)
        for n in (6, 7):
            self.assertIn("claims", by_num[n].workloads, n)
            self.assertIn("claims", by_num[n].checkers, n)
        for n in (90, 91, 92, 93, 94, 95, 96, 97):
            self.assertTrue(by_num[n].control, n)
        for n in (1, 2, 3, 5, 8, 9, 15):
            self.assertTrue({"membership", "groups", "names", "sends"}
                            <= set(by_num[n].workloads), n)
            self.assertIn("groups-names", by_num[n].checkers)
        for n in (1, 5):
            self.assertTrue({"claims", "strong-names"} <= set(by_num[n].workloads), n)

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
