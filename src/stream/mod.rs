//! One client's stream: catching up from storage, the live session that
//! reads its inbox in the hub, and the Rocket responder that writes it.
//!
//! Imports the handle ([`crate::context`]), delivery, storage and the
//! leaves. GRIP and the edge build on it.

pub(crate) mod admit;
pub(crate) mod refusal;
pub(crate) mod replay;
pub(crate) mod response;
pub(crate) mod session;
