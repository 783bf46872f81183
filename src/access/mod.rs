//! Who is asking and what they may read: what a request says about
//! itself, identities and tokens, the authorizer, CORS, and the limits on
//! streams per client.
//!
//! Imports the leaves ([`crate::wire`], [`crate::config`]) only; the
//! stream and edge layers ask these modules, never the other way round.

pub(crate) mod authorizer;
pub(crate) mod cors;
pub(crate) mod identity;
pub(crate) mod limits;
pub(crate) mod presence_rule;
pub(crate) mod request_info;
pub(crate) mod sign_in;
