"""The identity checker (chaos/checkers/identity.py) on synthetic histories: no agents."""

from __future__ import annotations

import unittest

from ._fixtures import all_alive, polls, run, start_events

from checkers import identity  # noqa: E402  (path set up by _fixtures)

REFUSED = {("n1", 1): {identity.CONFLICTS: 3.0}}
IMPOSTOR = {"t": 5.0, "kind": "impostor_start", "node": "n2", "ip": "10.77.0.4", "pid": 9}


def kinds(result) -> set[str]:
    return {v["kind"] for v in result.violations}


class Identity(unittest.TestCase):
    def test_no_impostor_passes_with_a_note(self):
        r = identity.check(run(start_events(), polls(0, 5, lambda n, t: all_alive(n))))
        self.assertEqual(r.violations, [])
        self.assertIn("no impostor ran", r.notes)

    def test_the_real_incarnation_everywhere_passes(self):
        r = identity.check(run([*start_events(), IMPOSTOR], polls(0, 20, lambda n, t: all_alive(n)),
                               last_metrics=REFUSED))
        self.assertEqual(r.violations, [], r.violations)

    def test_a_renewal_of_the_real_node_is_its_own(self):
        # n2 renews (201) and reports it itself: seeing 201 elsewhere is no displacement.
        def make(n, t):
            return all_alive(n, inc={"n2": 201} if t >= 10 else None)
        r = identity.check(run([*start_events(), IMPOSTOR], polls(0, 20, make),
                               last_metrics=REFUSED))
        self.assertEqual(r.violations, [], r.violations)

    def test_an_incarnation_the_real_node_never_had_is_displacement(self):
        # From t=10, n1 and n3 show n2 at 999 (the impostor's); n2 itself says 200.
        def make(n, t):
            if n != "n2" and t >= 10:
                return all_alive(n, inc={"n2": 999})
            return all_alive(n)
        r = identity.check(run([*start_events(), IMPOSTOR], polls(0, 20, make),
                               last_metrics=REFUSED))
        self.assertEqual(kinds(r), {"displaced"})
        self.assertEqual({v["node"] for v in r.violations}, {"n1", "n3"})
        self.assertTrue(all(v["inc"] == 999 for v in r.violations))

    def test_a_down_old_entry_is_not_displacement(self):
        # An impostor's incarnation seen only as down is a refused newcomer, not a win.
        def make(n, t):
            v = all_alive(n)
            if n != "n2":
                v["m"]["n2"] = ["down", 999] if 10 <= t < 11 else v["m"]["n2"]
            return v
        r = identity.check(run([*start_events(), IMPOSTOR], polls(0, 20, make),
                               last_metrics=REFUSED))
        self.assertEqual(r.violations, [], r.violations)

    def test_an_impostor_nobody_refused_proves_nothing(self):
        r = identity.check(run([*start_events(), IMPOSTOR], polls(0, 20, lambda n, t: all_alive(n))))
        self.assertEqual(kinds(r), {"conflict_not_exercised"})


if __name__ == "__main__":
    unittest.main()
