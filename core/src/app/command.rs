//! The git command.
