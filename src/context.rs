//! The context: what the stage sets up once and every send and stream
//! shares. It lives behind an `Arc` in [`Events`](crate::Events) (the
//! public handle); the parts that use it borrow only the pieces they need
//! (replay takes the storage and the metrics, not the whole context).

use std::sync::Arc;

use crate::access::authorizer::Authorizer;
use crate::access::identity::Identify;
use crate::access::limits::StreamLimits;
use crate::config::Config;
use crate::delivery::fanout::Fanout;
use crate::delivery::hub::Hub;
use crate::measure::metrics::Metrics;
use crate::measure::proxies::ProxyProbe;
use crate::presence::Presence;
use crate::storage::Storage;
use crate::write::writer::Writer;

/// Everything a send or a stream needs, built by the stage.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) storage: Storage,
    /// This process's streams, by channel.
    pub(crate) hub: Arc<Hub>,
    /// Where events and kicks go: the hub, then the other outlets.
    pub(crate) fanout: Arc<Fanout>,
    pub(crate) writer: Writer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) identity: Arc<dyn Identify>,
    /// `max_streams` and `max_streams_per_ip`, and the streams counted.
    pub(crate) limits: Arc<StreamLimits>,
    /// Who reads which channel, here and elsewhere.
    pub(crate) presence: Arc<Presence>,
    /// With GRIP: how publishing to each proxy goes.
    pub(crate) proxies: Option<Arc<dyn ProxyProbe>>,
}
