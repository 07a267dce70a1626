//! Reasons as enums: every drop or refusal a node counts has a variant, a metric label
//! ([`as_str`](crate::node::DropReason::as_str)) and a place in a complete list
//! (`ALL`) the shell registers at zero, as `mesh-transport`'s `stats` does for the
//! transport. A reason that is not in the enum cannot be counted.

/// Declares a reason enum: `Variant => "label"` pairs become the variants, `ALL` (in
/// declaration order) and `as_str`.
macro_rules! reasons {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every reason, in declaration order (for registering metrics at zero).
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The metric label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $label, )+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use reasons;

#[cfg(test)]
#[allow(unreachable_pub)] // the macro makes `pub` items; this enum is private
mod tests {
    reasons! {
        /// A test enum.
        enum Why {
            /// One.
            One => "one",
            /// Two.
            Two => "two",
        }
    }

    #[test]
    fn all_lists_every_variant_with_its_label() {
        let labels: Vec<&str> = Why::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(labels, ["one", "two"]);
        assert_eq!(Why::Two.to_string(), "two");
    }

    /// The labels are metric labels: they must not change (dashboards and alerts
    /// select on them), and none may repeat.
    #[test]
    fn the_node_and_quorum_drop_labels_are_pinned() {
        let node: Vec<&str> = crate::node::DropReason::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            node,
            [
                "malformed_datagram",
                "piggyback_of_refused_datagram",
                "malformed_batch",
                "malformed_state_frame",
                "malformed_user_frame",
                "malformed_delta",
                "malformed_ae_request",
                "malformed_ae_response",
                "unknown_channel",
                "unknown_response",
                "late_ack",
                "unexpected_ack",
                "refused_delta",
                "dissemination_refused",
                "swim_too_large",
                "encode_failed",
                "no_handler",
                "malformed_control_frame",
                "peer_unreachable",
                "unknown_origin",
            ]
        );
        let quorum: Vec<&str> = crate::node::claims_plane::QuorumDrop::ALL
            .iter()
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            quorum,
            [
                "malformed",
                "not_for_this_acceptor",
                "not_a_voter",
                "unknown_proposer",
                "no_root",
                "late_forward",
                "encode_failed",
                "oversized",
            ]
        );
        for labels in [&node, &quorum] {
            let unique: std::collections::BTreeSet<_> = labels.iter().collect();
            assert_eq!(unique.len(), labels.len(), "a label repeats: {labels:?}");
        }
    }
}
