"""Strong-name register/transfer/release/whereis --linearizable.

PENDING: strong names not landed (issue 4). When it lands, Workload(ctx) will:
invoke/complete history of strong-name operations; timeouts recorded as indeterminate.
"""

NAME = "strong-names"
DESCRIPTION = "strong-name register/transfer/release/whereis --linearizable"
PENDING = "strong names not landed (issue 4)"
