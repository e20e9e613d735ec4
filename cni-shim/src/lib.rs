//! `vswitch-cni`: the CNI plugin that attaches pods to vswitchd.
//!
//! A runtime runs it with `CNI_COMMAND` and friends in the environment and the
//! network configuration on stdin ([`config`]); it answers with a CNI result
//! or a CNI error object on stdout ([`result`], [`error`]). ADD asks vswitchd
//! for an attachment (a TAP interface or a vhost-user socket, a MAC and, unless
//! IPAM is delegated ([`delegate`]), addresses) and wires the pod's network
//! namespace the way Calico does ([`netns`]). The commands ([`commands`]) are
//! written against a [`commands::Platform`] so that they are tested without
//! root.

pub mod commands;
pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod netns;
pub mod result;
pub mod version;

pub use commands::{run, Outcome, Platform, System};
pub use error::CniError;
