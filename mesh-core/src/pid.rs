//! Process identifiers.
//!
//! A process is a mailbox on one node. Its [`Pid`] names the node, the node's *boot*
//! incarnation (so a PID of an earlier boot never matches a process of a later one)
//! and a local id that is never reused within a boot. PIDs are totally ordered —
//! node, then incarnation, then local id — which the name registry uses as its last
//! tie-breaker.
//!
//! The text form is `node/incarnation/local_id`, e.g. `n1/1733070000000/42`. Node names
//! may contain `.` and `-` but never `/`, so the form is unambiguous.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A process identifier: `{node, incarnation, local_id}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pid {
    /// The node hosting the process.
    #[serde(rename = "n")]
    pub node: String,
    /// The node's boot incarnation when the process was spawned.
    #[serde(rename = "i")]
    pub incarnation: u64,
    /// Unique among the processes of that boot, never reused.
    #[serde(rename = "l")]
    pub local_id: u64,
}

impl Pid {
    /// Makes a PID.
    pub fn new(node: impl Into<String>, incarnation: u64, local_id: u64) -> Self {
        Self {
            node: node.into(),
            incarnation,
            local_id,
        }
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.node, self.incarnation, self.local_id)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{self}>")
    }
}

/// Why a PID's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PID {0:?}: expected node/incarnation/local_id, e.g. n1/1733070000000/42")]
pub struct PidParseError(pub String);

impl FromStr for Pid {
    type Err = PidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PidParseError(s.to_owned());
        let mut parts = s
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .split('/');
        let (Some(node), Some(inc), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        crate::identity::validate_name(node).map_err(|_| err())?;
        Ok(Self {
            node: node.to_owned(),
            incarnation: inc.parse().map_err(|_| err())?,
            local_id: id.parse().map_err(|_| err())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_tolerates_angle_brackets() {
        let p = Pid::new("db-1.eu", 1_733_070_000_000, 42);
        assert_eq!(p.to_string(), "db-1.eu/1733070000000/42");
        assert_eq!(p.to_string().parse::<Pid>(), Ok(p.clone()));
        assert_eq!(format!("{p:?}").parse::<Pid>(), Ok(p));
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in [
            "", "n1", "n1/2", "n1/2/3/4", "n1/x/3", "n1/2/-3", "a b/1/2", "/1/2",
        ] {
            assert!(bad.parse::<Pid>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn order_is_node_then_incarnation_then_local_id() {
        let mut v = [
            Pid::new("n2", 1, 1),
            Pid::new("n1", 2, 0),
            Pid::new("n1", 1, 9),
            Pid::new("n1", 1, 3),
        ];
        v.sort();
        let shown: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["n1/1/3", "n1/1/9", "n1/2/0", "n2/1/1"]);
    }
}
