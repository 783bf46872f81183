//! The checks every stream starts with, direct or through a GRIP proxy:
//! may this user read these channels, and does their id vector fit.

use super::refusal::Refusal;
use super::replay;
use crate::access::authorizer;
use crate::access::identity::User;
use crate::context::Context;

/// Which of `channels` are persistent, once `user` may read them all and
/// their id vector fits `max_id_vector_bytes`.
pub(crate) async fn admit(
    context: &Context,
    user: Option<&User>,
    channels: &[String],
) -> Result<Vec<bool>, Refusal> {
    let reliable = authorizer::authorize(context.authorizer.as_ref(), user, channels).await?;
    replay::check_id_vector(channels, &reliable, context.config.max_id_vector_bytes)?;
    Ok(reliable)
}
