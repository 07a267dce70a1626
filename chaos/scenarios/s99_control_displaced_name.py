"""Negative control: the real n2 is killed unannounced while an impostor runs under its
name, so the impostor takes the name over (once the peers' connections to the dead n2
close) and the others show n2 at the impostor's incarnation. The identity checker must
fail with `displaced`; chaos/selftest asserts that it does. Then the impostor is killed
and the real n2 restarted, so the run ends whole.
"""

NUMBER = 99
NAME = "control-displaced-name"
TITLE = "NEGATIVE CONTROL: n2 killed unannounced while an impostor runs; displacement must be found"
NODES = 3
MIN_NODES = 3
SPARES = 1
CONTROL = {"checker": "identity", "violation": "displaced"}
# The unannounced kill also makes n2's Down look false and its exit unexplained; only
# the identity checker is under test here.
CHECKERS = ["identity"]
STEPS = [
    ("hold", 3),
    ("impostor_start", "n2"),
    ("hold", 3),
    ("hidden_kill", "n2"),
    ("hold", 25),
    ("impostor_kill", "n2"),
    ("restart", "n2"),
    ("converge",),
]
