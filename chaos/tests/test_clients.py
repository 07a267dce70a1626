"""The harness's own clients (listen streams, sends, registry polls, the registry check)
against fake agents (tests/fake_agents.py): no root, no meshctl.

These test the harness, not mesh: the fake shares one registry between its agents.
"""

from __future__ import annotations

import time
import unittest
from types import SimpleNamespace

from . import _fixtures  # noqa: F401  (sets up the import path)
from .fake_agents import FakeCluster, wait_until

from checkers import claims, groups_names, sends, strong_names  # noqa: E402
from harness.observer import Observer  # noqa: E402
from harness.recorder import Recorder  # noqa: E402
from harness.registry import History  # noqa: E402
from harness.rundata import RunData  # noqa: E402
from harness.scenario import DEFAULT_BOUNDS  # noqa: E402
from workloads import claims as claims_wl  # noqa: E402
from workloads import groups, names  # noqa: E402
from workloads import strong_names as strong_wl  # noqa: E402
from workloads import sends as sends_wl  # noqa: E402
from workloads._pool import Pool  # noqa: E402


class Clients(unittest.TestCase):
    def setUp(self):
        self.c = FakeCluster(3)
        self.rec = Recorder(None, echo=False)
        self.obs = Observer(self.c, self.rec)
        self.obs.registry_every = 0.1
        self.ctx = SimpleNamespace(
            cluster=self.c, recorder=self.rec, observer=self.obs,
            steps=SimpleNamespace(converge_hooks=[], workloads={}),
            bounds={**DEFAULT_BOUNDS, "registry_converge_s": 5.0, "registry_stable_s": 0.3,
                    "delivery_grace_s": 0.3},
            seed=7)
        self.pool = Pool.of(self.ctx)

    def tearDown(self):
        self.pool.stop()
        self.obs.stop()
        self.c.close()

    def data(self) -> RunData:
        return RunData(scenario="test", nodes=self.c.names(), bounds=self.ctx.bounds,
                       events=list(self.rec.events), observations=[],
                       registry_observations=self.obs.sorted_registry())

    def kinds(self, *kinds):
        return [e for e in self.rec.events if e["kind"] in kinds]

    def test_a_listener_joins_reads_what_is_sent_and_its_close_is_confirmed(self):
        self.assertEqual(self.ctx.steps.converge_hooks, [self.pool.check_registry])
        self.assertIsNotNone(self.pool.check_registry("start")["converged_at"])
        x = self.pool.open("n1", ["g0", "g0"], owner="groups")
        self.assertIsNotNone(x)
        s = sends_wl.Workload(self.ctx)
        done = s.send("n2", 1, {"group": "g0", "scope": "default", "mode": "all"})
        self.assertEqual((done["outcome"], done["delivered"]), ("ok", 1))
        self.assertTrue(wait_until(lambda: self.kinds("recv")))
        self.assertIsNotNone(self.pool.check_registry("mid")["converged_at"])
        time.sleep(0.4)  # past the delivery grace: the send is decidable
        x.close()
        ok = self.kinds("unlisten_ok")
        self.assertEqual([e["confirmed"] for e in ok], [True])
        self.assertIsNotNone(self.pool.check_registry("end")["converged_at"])
        h = History(self.rec.events)
        lst = h.listeners["L1"]
        self.assertEqual((lst.pid, [r["payload"] for r in lst.received]),
                         ("n1/1/1", ["chaos n2.1"]))
        self.assertEqual(groups_names.check(self.data()).violations, [])
        r = sends.check(self.data())
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["decided_exactly"], 1)

    def test_a_name_taken_in_the_agents_view_is_refused_with_409(self):
        self.pool.check_registry("start")
        wl = names.Workload(self.ctx)
        self.assertIsNotNone(wl.register("n1", "nm-x"))
        self.assertIsNone(wl.register("n2", "nm-x"))
        fail = self.kinds("listen_fail")
        self.assertEqual([f["status"] for f in fail], [409])
        claim = self.kinds("name_claim")[0]
        self.assertEqual((claim["pid"], claim["holder"]), ("n1/1/1", "n1/1/1"))
        self.assertTrue(claim["hlc"])

    def test_the_workloads_churn_and_send_and_the_checkers_find_nothing_wrong(self):
        wls = [groups.Workload(self.ctx), names.Workload(self.ctx),
               sends_wl.Workload(self.ctx)]
        for w in wls:
            w.start()
        self.pool.check_registry("start")
        time.sleep(3.0)
        self.assertIsNotNone(self.pool.check_registry("mid")["converged_at"])
        time.sleep(1.0)
        self.assertIsNotNone(self.pool.check_registry("end")["converged_at"])
        self.pool.stop()
        self.assertEqual(self.kinds("workload_error"), [])
        ops = wls[0].operations()
        self.assertGreaterEqual(ops["succeeded"], 6)  # the first 2 per node, at least
        self.assertGreater(wls[2].operations()["succeeded"], 5)
        r = groups_names.check(self.data())
        self.assertEqual(r.violations, [])
        self.assertEqual([c["ok"] for c in r.details["checks"]], [True, True, True])
        r = sends.check(self.data())
        self.assertEqual(r.violations, [])
        self.assertGreater(r.details["reads"], 0)
        # The schedule is the seed's: a second pool with the same seed picks the same.
        self.assertEqual(self.pool.rng("groups").random(), Pool.rng(self.pool, "groups")
                         .random())

    def test_a_member_the_agents_lose_is_reported_lost_and_the_check_says_so(self):
        self.pool.check_registry("start")
        x = self.pool.open("n2", ["g1"], owner="groups")
        self.c.agents["n2"].lose(x.pid)
        ev = self.pool.check_registry("lose", within=1.0)
        self.assertIsNone(ev["converged_at"])
        self.assertTrue(any("L1" in p for p in ev["problems"]), ev["problems"])
        r = groups_names.check(self.data())
        self.assertEqual({v["kind"] for v in r.violations}, {"lost_without_reason"})

    def test_a_stream_the_agent_ends_unasked_is_recorded_and_judged_lost(self):
        self.pool.check_registry("start")
        x = self.pool.open("n3", ["g2"], owner="groups")
        self.c.registry.exit(x.pid)
        self.assertTrue(wait_until(lambda: self.kinds("listen_ended")))
        self.assertEqual(self.kinds("listen_ended")[0]["reason"], "exited")
        r = groups_names.check(self.data())
        self.assertEqual({v["kind"] for v in r.violations}, {"stream_lost"})

    def test_hidden_close_and_replay_plant_what_the_controls_need(self):
        self.pool.check_registry("start")
        g = groups.Workload(self.ctx)
        s = sends_wl.Workload(self.ctx)
        self.pool.open("n1", ["g0"], owner="groups")
        s.send("n1", 1, {"group": "g0", "scope": "default", "mode": "all"})
        self.assertTrue(wait_until(lambda: self.kinds("recv")))
        s.replay("n1")
        self.assertTrue(wait_until(lambda: len(self.kinds("recv")) == 2))
        self.assertEqual({v["kind"] for v in sends.check(self.data()).violations},
                         {"duplicate_delivery"})
        g.hidden_close("n1")
        # hidden_close opens a listener of its own and closes that one (cf00c32): the
        # first listener stays.
        self.assertTrue(wait_until(lambda: len(self.c.registry.snapshot()) == 1))
        self.pool.check_registry("hidden", within=1.0)
        self.assertIn("lost_without_reason",
                      {v["kind"] for v in groups_names.check(self.data()).violations})


class QuorumClients(unittest.TestCase):
    """The claims and strong-names clients against the fake quorum plane."""

    def setUp(self):
        self.c = FakeCluster(3)
        self.rec = Recorder(None, echo=False)
        self.ctx = SimpleNamespace(cluster=self.c, recorder=self.rec, seed=11,
                                   formed=lambda: True,
                                   bounds={**DEFAULT_BOUNDS})
        self.wls = []

    def tearDown(self):
        for w in self.wls:
            w.stop()
        self.c.close()

    def start(self, mod):
        w = mod.Workload(self.ctx)
        w.start()
        self.wls.append(w)
        return w

    def data(self, **bounds) -> RunData:
        return RunData(scenario="test", nodes=self.c.names(),
                       bounds={**self.ctx.bounds, **bounds}, events=list(self.rec.events),
                       observations=[])

    def kinds(self, *kinds):
        return [e for e in self.rec.events if e["kind"] in kinds]

    def test_claim_clients_hold_renew_write_and_release_and_the_checker_passes(self):
        w = self.start(claims_wl)
        time.sleep(4.0)
        w.stop()
        self.assertEqual(self.kinds("workload_error"), [])
        r = claims.check(self.data())
        self.assertEqual(r.violations, [])
        self.assertGreaterEqual(r.details["grants"], 3)
        self.assertGreater(r.details["writes"]["accepted"], 5)
        self.assertEqual(r.details["writes"]["refused"], 0)
        self.assertTrue(self.kinds("claim_release_done"))
        # A window ends valid_for after the request was sent (minus the guard) and
        # starts when the answer arrived.
        sent = {e["k"]: e["t_send"] for e in self.kinds("claim")}
        for done in [e for e in self.kinds("claim_done") if e["outcome"] == "ok"][:5]:
            self.assertEqual(done["window"][1], approx(
                sent[done["k"]] + done["valid_for_ms"] / 1000 - claims_wl.GUARD_S))
            self.assertEqual(done["window"][0], approx(done["at"]))
        # Repeat claims renewed: some token has more than one window.
        per_token = {}
        for e in self.kinds("claim_done"):
            if e["outcome"] == "ok":
                per_token[(e["task"], e["token"])] = per_token.get((e["task"], e["token"]), 0) + 1
        self.assertGreater(max(per_token.values()), 1)
        self.assertGreater(w.operations()["succeeded"], 5)

    def test_a_holder_frozen_past_its_lease_writes_late_and_the_fence_refuses_it(self):
        w = self.start(claims_wl)
        w.freeze("n1")
        frozen = self.kinds("holder_frozen")[0]
        task = frozen["task"]
        # The lease (2 s, never renewed while frozen) runs out; another holder writes.
        self.assertTrue(wait_until(lambda: any(
            e["task"] == task and e["node"] != "n1" and e["accepted"]
            for e in self.kinds("fence_write")), timeout=6.0))
        w.thaw("n1")
        self.assertTrue(wait_until(lambda: any(
            not e["in_window"] for e in self.kinds("fence_write")), timeout=3.0))
        w.stop()
        late = [e for e in self.kinds("fence_write") if not e["in_window"]]
        self.assertEqual([(e["node"], e["accepted"]) for e in late], [("n1", False)])
        r = claims.check(self.data(claims_min_late_refused=1))
        self.assertEqual(r.violations, [])
        self.assertEqual(r.details["writes"]["late_refused"], 1)

    def test_an_unfenced_resource_takes_the_late_write_and_the_checker_catches_it(self):
        w = self.start(claims_wl)
        w.unfence()
        w.freeze("n2")
        task = self.kinds("holder_frozen")[0]["task"]
        self.assertTrue(wait_until(lambda: any(
            e["task"] == task and e["node"] != "n2" for e in self.kinds("fence_write")),
            timeout=6.0))
        w.thaw("n2")
        self.assertTrue(wait_until(lambda: any(
            not e["in_window"] for e in self.kinds("fence_write")), timeout=3.0))
        w.stop()
        r = claims.check(self.data())
        self.assertEqual({v["kind"] for v in r.violations}, {"stale_token_accepted"})
        self.assertEqual(r.violations[0]["task"], task)

    def test_without_a_quorum_every_call_fails_and_nothing_is_granted(self):
        self.c.quorum.available = False
        w = self.start(claims_wl)
        s = self.start(strong_wl)
        time.sleep(1.0)
        w.stop()
        s.stop()
        self.assertEqual({e["status"] for e in self.kinds("claim_done", "sn_done")}, {503})
        self.assertEqual(w.operations()["succeeded"] + s.operations()["succeeded"], 0)
        self.assertEqual({v["kind"] for v in claims.check(self.data()).violations},
                         {"too_few_grants"})

    def test_strong_name_clients_produce_a_linearizable_history_on_a_linearizable_table(self):
        s = self.start(strong_wl)
        time.sleep(4.0)
        s.stop()
        self.assertEqual(self.kinds("workload_error"), [])
        ops = {(e["op"]) for e in self.kinds("sn")}
        self.assertEqual(ops, {"register", "release", "whereis"})
        statuses = {e["status"] for e in self.kinds("sn_done")}
        self.assertTrue({200, 409} <= statuses, statuses)
        r = strong_names.check(self.data())
        self.assertEqual(r.violations, [])
        self.assertGreater(sum(v["ops"] for v in r.details["names"].values()), 20)

    def test_a_lagging_cache_read_recorded_as_linearizable_is_not_linearizable(self):
        s = strong_wl.Workload(self.ctx)
        self.c.agents["n3"].stale_cache = True
        s.stale_read("n1", "n3")
        self.assertEqual(self.kinds("stale_read")[0]["read_status"], 404)
        r = strong_names.check(self.data())
        self.assertEqual({v["kind"] for v in r.violations}, {"not_linearizable"})
        self.assertEqual(r.violations[0]["name"], "sn-ctl-1")


def approx(x: float):
    """Equal to x within 1 ms (the recorder keeps microseconds)."""
    class Approx:
        def __eq__(self, other):
            return abs(other - x) < 1e-3

        def __repr__(self):
            return f"~{x}"
    return Approx()


if __name__ == "__main__":
    unittest.main()
