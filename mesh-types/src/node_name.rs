//! Node-name rules: a node name is also the only DNS subjectAltName of the node's
//! certificate, so it must be a valid DNS name.

/// The longest node name accepted (a DNS label fits in 63 bytes).
pub const MAX_NODE_NAME_LEN: usize = 63;

/// Whether `name` can be a node name: 1 to 63 bytes of `[A-Za-z0-9.-]`, starting and
/// ending with a letter or digit, so it is also a valid DNS name in a certificate.
pub fn is_valid_node_name(name: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= MAX_NODE_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_of_letters_digits_dashes_and_dots() {
        for ok in ["n1", "a", "node-1.example", &"x".repeat(MAX_NODE_NAME_LEN)] {
            assert!(is_valid_node_name(ok), "{ok:?}");
        }
        for bad in ["", "-n1", "n1-", ".n", "n_1", "n 1", "é", &"x".repeat(64)] {
            assert!(!is_valid_node_name(bad), "{bad:?}");
        }
    }
}
