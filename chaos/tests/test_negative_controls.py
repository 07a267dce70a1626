"""Negative controls on real agents: each must make its checker fail with its violation.

Needs root and network namespaces (skipped otherwise) and a built meshctl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

CHAOS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHAOS))

from harness.scenario import all_scenarios  # noqa: E402
from harness.util import default_meshctl, unsupported_reason  # noqa: E402

REASON = unsupported_reason() or (None if default_meshctl() else "meshctl not built")


@unittest.skipIf(REASON, f"chaos harness unavailable: {REASON}")
class NegativeControls(unittest.TestCase):
    def _run_control(self, name: str) -> tuple[int, dict]:
        with tempfile.TemporaryDirectory() as d:
            out = Path(d, "report.json")
            cp = subprocess.run([str(CHAOS / "run"), name, "--report-json", str(out)],
                                capture_output=True, text=True, timeout=300,
                                env={**os.environ})
            self.assertTrue(out.exists(), f"no report; stderr:\n{cp.stderr[-3000:]}")
            return cp.returncode, json.loads(out.read_text())

    def _assert_fails_as_declared(self, name: str):
        scn = next(s for s in all_scenarios() if s.name == name)
        code, rep = self._run_control(name)
        self.assertEqual(rep["status"], "completed", rep.get("error"))
        self.assertEqual(code, 1, "a negative control must exit 1 (violations)")
        self.assertEqual(rep["result"], "fail")
        found = {(v["checker"], v["kind"]) for v in rep["violations"]}
        self.assertIn((scn.control["checker"], scn.control["violation"]), found)
        # The planted fault is the only thing wrong: no other checker complains.
        self.assertEqual({c for c, _ in found}, {scn.control["checker"]}, found)

    def test_an_impostor_that_took_a_dead_nodes_name_is_displacement(self):
        self._assert_fails_as_declared("control-displaced-name")

    def test_an_unhealed_partition_fails_membership_convergence(self):
        self._assert_fails_as_declared("control-unhealed-partition")

    def test_an_unannounced_pause_under_loss_is_counted_as_false_downs(self):
        self._assert_fails_as_declared("control-hidden-pause")

    def test_group_views_compared_under_a_partition_fail_groups_names(self):
        self._assert_fails_as_declared("control-registry-under-partition")

    def test_a_listener_closed_unannounced_is_reported_lost_by_groups_names(self):
        self._assert_fails_as_declared("control-hidden-close")

    def test_a_payload_sent_twice_unannounced_is_a_duplicate_for_sends(self):
        self._assert_fails_as_declared("control-replayed-send")

    def test_a_fence_that_skips_its_check_takes_the_paused_holders_stale_write(self):
        self._assert_fails_as_declared("control-unfenced-resource")

    def test_a_cached_strong_read_used_as_linearizable_is_not_linearizable(self):
        self._assert_fails_as_declared("control-cached-strong-read")

    def test_a_holder_clock_far_beyond_rho_makes_validity_windows_overlap(self):
        self._assert_fails_as_declared("control-skew-beyond-rho")

    def test_a_leaders_writer_that_outlives_its_term_is_an_effect_outside_the_term(self):
        self._assert_fails_as_declared("control-leaked-leader")


if __name__ == "__main__":
    unittest.main()
