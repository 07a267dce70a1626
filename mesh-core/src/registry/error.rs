//! One error enum per registry operation. Every error leaves the registry unchanged.

use std::fmt;

use crate::pid::Pid;

/// Longest scope, group or name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// Longest metadata value, in bytes.
pub const MAX_META_BYTES: usize = 4096;

/// Which field of an input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// A scope.
    Scope,
    /// A group name.
    Group,
    /// An eventual name.
    Name,
    /// A metadata value.
    Meta,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Scope => "scope",
            Self::Group => "group",
            Self::Name => "name",
            Self::Meta => "meta",
        })
    }
}

/// A scope, group, name or metadata value breaks a limit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidField {
    /// Scopes, groups and names must not be empty.
    #[error("the {field} must not be empty")]
    Empty {
        /// The field.
        field: Field,
    },
    /// Scopes, groups and names are at most [`MAX_NAME_BYTES`], metadata at most
    /// [`MAX_META_BYTES`].
    #[error("the {field} is {len} bytes, over the {max}-byte limit")]
    TooLong {
        /// The field.
        field: Field,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

pub(crate) fn check_name(field: Field, s: &str) -> Result<(), InvalidField> {
    if s.is_empty() {
        return Err(InvalidField::Empty { field });
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(InvalidField::TooLong {
            field,
            len: s.len(),
            max: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

pub(crate) fn check_meta(meta: Option<&str>) -> Result<(), InvalidField> {
    match meta {
        Some(m) if m.len() > MAX_META_BYTES => Err(InvalidField::TooLong {
            field: Field::Meta,
            len: m.len(),
            max: MAX_META_BYTES,
        }),
        _ => Ok(()),
    }
}

/// Why [`Registry::join`](super::Registry::join) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The list of groups was empty. Nothing changed.
    #[error("no group to join")]
    NoGroups,
    /// The scope, a group or the metadata breaks a limit. Nothing changed, not even for
    /// the valid groups of the list.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The process is hosted on another node; only its own node may change its
    /// entries. Nothing changed.
    #[error("{pid} is not a process of this node")]
    NotLocal {
        /// The process.
        pid: Pid,
    },
}

/// Why [`Registry::leave`](super::Registry::leave) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaveError {
    /// The list of groups was empty. Nothing changed.
    #[error("no group to leave")]
    NoGroups,
    /// The scope or a group breaks a limit. Nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The process is hosted on another node. Nothing changed.
    #[error("{pid} is not a process of this node")]
    NotLocal {
        /// The process.
        pid: Pid,
    },
    /// The process had joined none of the groups. Nothing changed. (If it had joined
    /// some, those are left and the call succeeds.)
    #[error("the process has joined none of the groups")]
    NotJoined,
}

/// Why [`Registry::set_meta`](super::Registry::set_meta) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetMetaError {
    /// The scope, group or metadata breaks a limit. Nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The process is hosted on another node; only the owner writes metadata. Nothing
    /// changed.
    #[error("{pid} is not a process of this node")]
    NotLocal {
        /// The process.
        pid: Pid,
    },
    /// The process is not a member of the group. Nothing changed.
    #[error("the process has not joined the group")]
    NotJoined,
}

/// Why [`Registry::register`](super::Registry::register) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// The name or metadata breaks a limit. Nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// The process is hosted on another node. Nothing changed.
    #[error("{pid} is not a process of this node")]
    NotLocal {
        /// The process.
        pid: Pid,
    },
    /// This node's view already has a winner for the name (possibly `pid` itself).
    /// Nothing changed.
    #[error("the name is registered to {0}")]
    AlreadyRegistered(Pid),
}

/// Why [`Registry::unregister`](super::Registry::unregister) refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnregisterError {
    /// The name breaks a limit. Nothing changed.
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// No visible claim on the name. Nothing changed.
    #[error("the name is not registered")]
    NotRegistered,
    /// The name is held by a process of another node, which alone may unregister it.
    /// Nothing changed.
    #[error("the name is held by {owner} on another node")]
    NotLocal {
        /// The holder.
        owner: Pid,
    },
}

/// Why a remote delta was refused by [`Registry::merge_groups`](super::Registry::merge_groups)
/// or [`Registry::merge_names`](super::Registry::merge_names). The whole delta is
/// dropped and counted in [`DropStats`](super::DropStats); nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// An entry names a process of another node than the origin that minted it; only
    /// a process's own node writes its entries.
    #[error("origin {origin} carries an entry of {pid}, which it does not host")]
    ForeignEntry {
        /// The origin partition holding the entry.
        origin: String,
        /// The entry's process.
        pid: Pid,
    },
    /// An entry breaks a size limit.
    #[error("origin {origin} carries an invalid entry: {error}")]
    InvalidEntry {
        /// The origin partition holding the entry.
        origin: String,
        /// What is wrong.
        error: InvalidField,
    },
}
