"""Strong names: the recorded history is linearizable.

PENDING: strong names land with issue 4. When they do, check() must run a WGL/Porcupine
style linearizability search over the `strong-names` workload's history (register /
transfer / release / linearizable whereis, each with invoke and complete times on the
oracle clock), counting timeouts as indeterminate (the operation may or may not have
taken effect, at any point after its invocation). Negative control: a quorum of 1.
"""

NAME = "strong-names"
DESCRIPTION = "strong-name register/transfer/release history is linearizable"
PENDING = "strong names not landed (issue 4)"
