//! [`Stage`]: the fairing that reads the configuration, opens and migrates
//! the event log, starts the writer and retention tasks, manages [`Events`]
//! and mounts the routes.
//!
//! Opening the event log (a configured database, a pool the application
//! gives, or one of its `rocket_db_pools` databases) and starting the bus
//! are in [`open`].

mod error;
mod open;

use self::error::IgniteError;
pub use self::open::{DEFAULT_DATABASE_URL, EventLog};
use self::open::{FetchPool, PoolSource};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rocket::fairing::{self, Fairing, Info, Kind};
use rocket::{Build, Orbit, Rocket};
use rocket_db_pools::Database;
use tokio::task::JoinHandle;

use crate::access::authorizer::{AllowAll, Authorizer};
use crate::access::identity::{Identify, JwtIdentity};
use crate::access::limits::StreamLimits;
#[cfg(feature = "cookies")]
use crate::access::sign_in::{CookieIdentity, FirstOf};
use crate::config::{Config, ConfigError, Secret};
use crate::context::Context;
use crate::delivery::fanout::{Fanout, Outlet};
use crate::delivery::hub::Hub;
use crate::edge::health::Health;
use crate::edge::routes;
use crate::events::Events;
use crate::grip::{Grip, link::Linker, publisher::GripPublisher, signature::Verifier};
use crate::measure::metrics::Metrics;
use crate::measure::proxies::ProxyProbe;
use crate::measure::throttle::Throttle;
use crate::presence::{self, Presence, ticker};
use crate::storage::{Storage, migrations};
use crate::write::retention;
use crate::write::writer::Writer;

/// The type's own name in a path: `PrivateChannels` for
/// `my_app::auth::PrivateChannels` (generic arguments left out).
fn type_name_of(path: &str) -> &str {
    let path = path.split('<').next().unwrap_or(path);
    path.rsplit("::").next().unwrap_or(path)
}

/// Attaches eventstream to a Rocket application.
///
/// ```no_run
/// # mod my_app { pub mod auth {
/// #     #[derive(Default)] pub struct PrivateChannels;
/// #     #[rocket::async_trait] impl eventstream_rocket::Authorizer for PrivateChannels {}
/// # } }
/// #[rocket::launch]
/// fn rocket() -> _ {
///     rocket::build().attach(
///         eventstream_rocket::Stage::new().authorizer::<my_app::auth::PrivateChannels>(),
///     )
/// }
/// ```
///
/// With that, `GET /events/?channel=news` streams and
/// `&State<eventstream_rocket::Events>` sends.
pub struct Stage {
    authorizers: Vec<(String, Arc<dyn Authorizer>)>,
    identity: Option<Arc<dyn Identify>>,
    pool: Mutex<Option<PoolSource>>,
    running: Mutex<Option<Running>>,
}

/// What `ignite` built, for Rocket to manage.
struct Ignited {
    events: Events,
    grip: Option<Arc<Grip>>,
    health: Health,
    running: Running,
}

/// What the stage started and must stop at shutdown.
struct Running {
    /// Retention, and the bus's tasks.
    tasks: Vec<JoinHandle<()>>,
    owned_pool: Option<Storage>,
}

impl Default for Stage {
    fn default() -> Self {
        Stage::new()
    }
}

impl Stage {
    /// A stage with no authorizer registered (everything readable), the
    /// built-in JWT identity, and the event log in `databases.eventstream`.
    pub fn new() -> Self {
        Stage {
            authorizers: Vec::new(),
            identity: None,
            pool: Mutex::new(Some(PoolSource::Configured)),
            running: Mutex::new(None),
        }
    }

    /// Registers `A` under [`Authorizer::name`], its Rust path. With one
    /// authorizer registered it is used unless `EVENTSTREAM_AUTHORIZER`
    /// names another; with several, the setting must choose.
    pub fn authorizer<A: Authorizer + Default>(self) -> Self {
        self.authorizer_named(A::name(), A::default())
    }

    /// Registers an authorizer instance under an explicit name.
    pub fn authorizer_named(
        mut self,
        name: impl Into<String>,
        authorizer: impl Authorizer,
    ) -> Self {
        self.authorizers.push((name.into(), Arc::new(authorizer)));
        self
    }

    /// Replaces the built-in JWT identity.
    pub fn identity(mut self, identity: impl Identify) -> Self {
        self.identity = Some(Arc::new(identity));
        self
    }

    /// Keeps the event log in a pool the application already has.
    pub fn pool(self, pool: impl Into<EventLog>) -> Self {
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(PoolSource::Given(pool.into()));
        self
    }

    /// Keeps the event log in the application's `rocket_db_pools` database
    /// `D` (attach `D::init()` before this stage).
    pub fn database<D>(self) -> Self
    where
        D: Database,
        D::Pool: Clone + Into<EventLog>,
    {
        let fetch: FetchPool = Box::new(|rocket| D::fetch(rocket).map(|db| (**db).clone().into()));
        *self.pool.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(PoolSource::Fetch(std::any::type_name::<D>(), fetch));
        self
    }

    fn choose_authorizer(&self, config: &Config) -> Result<Arc<dyn Authorizer>, ConfigError> {
        let registered = || {
            let mut names: Vec<&str> = self
                .authorizers
                .iter()
                .map(|(name, _)| name.as_str())
                .collect();
            names.push("eventstream_rocket::AllowAll");
            names.join(", ")
        };
        match &config.authorizer {
            Some(wanted) => {
                // The name as registered; else the type's own name, which
                // survives moving the type and however the compiler spells
                // the path before it.
                let exact = self.authorizers.iter().find(|(name, _)| name == wanted);
                let by_type: Vec<_> = self
                    .authorizers
                    .iter()
                    .filter(|(name, _)| type_name_of(name) == type_name_of(wanted))
                    .collect();
                match (exact, by_type.as_slice()) {
                    (Some((_, found)), _) | (None, [(_, found)]) => Ok(Arc::clone(found)),
                    (None, []) if type_name_of(wanted) == type_name_of(&AllowAll::name()) => {
                        Ok(Arc::new(AllowAll))
                    }
                    (None, []) => Err(ConfigError::new(
                        "authorizer",
                        format!(
                            "no authorizer named {wanted:?} is registered with the stage; registered: {}",
                            registered()
                        ),
                    )),
                    (None, _) => Err(ConfigError::new(
                        "authorizer",
                        format!(
                            "{wanted:?} could be any of several registered authorizers; give one's full name: {}",
                            registered()
                        ),
                    )),
                }
            }
            None => match self.authorizers.as_slice() {
                [] => Ok(Arc::new(AllowAll)),
                [(_, only)] => Ok(Arc::clone(only)),
                _ => Err(ConfigError::new(
                    "authorizer",
                    format!(
                        "several authorizers are registered; choose one with EVENTSTREAM_AUTHORIZER: {}",
                        registered()
                    ),
                )),
            },
        }
    }
}

/// The built-in JWT identity with the configured secret and pins.
/// A token, when the request carries one (a bad one is refused, even with
/// a cookie); else the sign-in cookie, when `identity_cookie` names one.
fn builtin_identity(config: &Config) -> Arc<dyn Identify> {
    let mut jwt = JwtIdentity::new(config.jwt_secret.as_ref().map(Secret::expose));
    if let Some(issuer) = &config.jwt_issuer {
        jwt = jwt.issuer(issuer);
    }
    if let Some(audience) = &config.jwt_audience {
        jwt = jwt.audience(audience);
    }
    // Config::validate refuses identity_cookie without the feature.
    #[cfg(feature = "cookies")]
    if let Some(name) = &config.identity_cookie {
        return Arc::new(FirstOf(jwt, CookieIdentity::named(name)));
    }
    Arc::new(jwt)
}

#[rocket::async_trait]
impl Fairing for Stage {
    fn info(&self) -> Info {
        Info {
            name: "eventstream",
            kind: Kind::Ignite | Kind::Shutdown | Kind::Singleton,
        }
    }

    async fn on_ignite(&self, rocket: Rocket<Build>) -> fairing::Result {
        match self.ignite(&rocket).await {
            Ok(Ignited {
                events,
                grip,
                health,
                running,
            }) => {
                let mount = events.config().mount.clone();
                let publish = events.config().publish_key.is_some();
                let operator = routes::operator::routes(events.config());
                *self.running.lock().unwrap_or_else(PoisonError::into_inner) = Some(running);
                let rocket = match grip {
                    Some(grip) => rocket.manage(grip),
                    None => rocket,
                };
                Ok(rocket
                    .manage(events)
                    .manage(health)
                    .mount(mount, routes::routes(publish))
                    .mount("/", operator))
            }
            Err(why) => {
                log::error!("eventstream: {why}");
                Err(rocket)
            }
        }
    }

    async fn on_shutdown(&self, _rocket: &Rocket<Orbit>) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(running) = running {
            for task in &running.tasks {
                task.abort();
            }
            if let Some(storage) = running.owned_pool {
                storage.close().await;
            }
        }
    }
}

impl Stage {
    /// Builds the data path, lowest layer first: storage, the fan-out's
    /// outlets (the hub, then the GRIP publisher), the writer, the context.
    async fn ignite(&self, rocket: &Rocket<Build>) -> Result<Ignited, IgniteError> {
        let config = Config::from_figment(rocket.figment())?;
        let authorizer = self.choose_authorizer(&config)?;
        let source = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(PoolSource::Configured);
        let (storage, owned) = open::open_storage(source, rocket, &config).await?;
        migrations::migrate(&storage)
            .await
            .map_err(|e| IgniteError::Storage(format!("migrating the event log failed: {e}")))?;
        let identity = self
            .identity
            .clone()
            .unwrap_or_else(|| builtin_identity(&config));
        let metrics = Arc::new(Metrics::default());
        let hub = Arc::new(Hub::new(Arc::clone(&metrics)));
        let presence = Presence::new(
            presence::Settings {
                interval: Duration::from_millis(config.presence_interval_ms),
                list_max: config.presence_list_max,
                lease: Duration::from_secs(config.presence_lease_secs),
                proxied_lease: config.presence_proxied_lease(),
            },
            Arc::clone(&hub),
        );
        let bus = open::start_bus(&config, &storage, &hub, &metrics, &presence).await?;
        let mut outlets: Vec<Arc<dyn Outlet>> = match &bus {
            // Committed events reach the hub through the sequencer, which
            // orders them with those of the other instances.
            Some(bus) => vec![Arc::clone(&bus.sequencer), Arc::clone(&bus.sender)],
            None => vec![Arc::clone(&hub) as Arc<dyn Outlet>],
        };
        let mut publishing = None;
        let grip = if config.grip_enabled() {
            let verifier = Verifier::new(&config.grip_proxies)?;
            let publisher = GripPublisher::spawn(&config.grip_proxies, Arc::clone(&metrics));
            let pending = publisher.pending();
            publishing = Some(publisher.clone());
            presence.publish_to(Arc::new(publisher.clone()));
            outlets.push(Arc::new(publisher));
            Some(Arc::new(Grip {
                pending,
                verifier,
                linker: Linker::new(
                    config.link_key.as_ref().map_or("", Secret::expose),
                    config.grip_link_timeout_secs,
                ),
            }))
        } else {
            None
        };
        let fanout = Arc::new(Fanout::new(outlets, Arc::clone(&metrics)));
        let writer = Writer::spawn(
            storage.clone(),
            Arc::clone(&fanout),
            config.durability,
            config.commit_batch,
            bus.as_ref()
                .filter(|bus| bus.writer_announces)
                .map(|bus| Arc::clone(&bus.seal)),
            Arc::clone(&metrics),
        );
        let mut tasks = vec![retention::spawn(
            storage.clone(),
            Arc::clone(writer.gate()),
            Arc::clone(&metrics),
            &config,
        )];
        let health = Health {
            storage: storage.clone(),
            bus: bus.as_ref().map(|bus| Arc::clone(&bus.state)),
            grip: publishing.clone(),
            details_logged: Throttle::every_ms(60_000),
        };
        tasks.extend(bus.into_iter().flat_map(|bus| bus.tasks));
        tasks.push(tokio::spawn(ticker::run(Arc::clone(&presence))));
        let limits = Arc::new(StreamLimits::new(
            config.max_streams,
            config.max_streams_per_ip,
        ));
        let running = Running {
            tasks,
            owned_pool: owned.then(|| storage.clone()),
        };
        let context = Context {
            config,
            storage,
            hub,
            fanout,
            writer,
            metrics,
            authorizer,
            identity,
            limits,
            presence,
            proxies: publishing.map(|publisher| Arc::new(publisher) as Arc<dyn ProxyProbe>),
        };
        Ok(Ignited {
            events: Events::new(context),
            grip,
            health,
            running,
        })
    }
}
