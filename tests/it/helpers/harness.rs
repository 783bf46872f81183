//! The test harness (libtest-mimic): which services this machine offers,
//! one trial per test (one per backend where the contract must hold on
//! each), each run on a Tokio runtime of its own.
//!
//! A trial that needs a missing service is ignored, except under CI (`CI`
//! set, as `scripts/test.sh` does): there it fails and says the service is
//! required, so a broken CI machine never passes by skipping.

use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Duration;

use libtest_mimic::{Failed, Trial};

use super::Setup;
use super::database::postgres_admin_url;

/// A service some tests need besides SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Pushpin,
    /// `redis-server` to start private servers with (and PostgreSQL for
    /// the event log those tests share).
    Redis,
}

impl Service {
    /// How to provide it, for the failure under CI.
    fn remedy(self) -> &'static str {
        match self {
            Service::Postgres => "start PostgreSQL or point EVENTSTREAM_TEST_POSTGRES at one",
            Service::Pushpin => "apt-get install -y pushpin",
            Service::Redis => "apt-get install -y redis-server (scripts/services.sh does)",
        }
    }
}

impl Setup {
    /// The service a test on this backend needs (SQLite needs none).
    fn needs(self) -> Option<Service> {
        match self {
            Setup::Sqlite => None,
            Setup::Postgres => Some(Service::Postgres),
            Setup::Pushpin => Some(Service::Pushpin),
        }
    }

    /// The last segment of a per-backend trial's name.
    fn trial_suffix(self) -> &'static str {
        match self {
            Setup::Sqlite => "sqlite",
            Setup::Postgres => "postgres",
            Setup::Pushpin => "through_pushpin",
        }
    }
}

/// Why each missing service is missing.
struct Services {
    postgres: Option<String>,
    pushpin: Option<String>,
    redis: Option<String>,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

impl Services {
    fn missing(&self, service: Service) -> Option<&str> {
        match service {
            Service::Postgres => self.postgres.as_deref(),
            Service::Pushpin => self.pushpin.as_deref(),
            Service::Redis => self.redis.as_deref().or(self.postgres.as_deref()),
        }
    }
}

fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Probes PostgreSQL and Pushpin, once, before `main` builds the trials,
/// and says on stderr what a missing one means for its trials.
pub fn probe_services() {
    let services = SERVICES.get_or_init(|| Services {
        postgres: probe_postgres().err(),
        pushpin: probe_pushpin().err(),
        redis: probe_redis().err(),
    });
    for service in [Service::Postgres, Service::Pushpin, Service::Redis] {
        if let Some(why) = services.missing(service) {
            if under_ci() {
                eprintln!("{why}: its tests fail (CI is set)");
            } else {
                eprintln!("{why}: its tests are ignored (with CI set they fail)");
            }
        }
    }
}

fn probe_postgres() -> Result<(), String> {
    use sqlx::Connection;
    let url = postgres_admin_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("no runtime to probe PostgreSQL with: {e}"))?;
    runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await
        {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Ok(())
            }
            Ok(Err(e)) => Err(format!("PostgreSQL is unreachable at {url} ({e})")),
            Err(_) => Err(format!("PostgreSQL at {url} did not answer within 5 s")),
        }
    })
}

fn probe_pushpin() -> Result<(), String> {
    std::process::Command::new("pushpin")
        .arg("--version")
        .output()
        .map(drop)
        .map_err(|e| format!("Pushpin is not installed (pushpin --version: {e})"))
}

fn probe_redis() -> Result<(), String> {
    std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(drop)
        .map_err(|e| format!("Redis is not installed (redis-server --version: {e})"))
}

/// The runtime a trial runs on, built as `#[tokio::test]` builds it.
#[derive(Debug, Clone, Copy)]
pub enum Flavor {
    /// `flavor = "multi_thread", worker_threads = 2`: the default here.
    MultiThread,
    /// `flavor = "current_thread"`: for tests that need spawned tasks to
    /// wait while the test body runs.
    CurrentThread,
    /// Like `MultiThread`, but with no other trial running meanwhile: for
    /// the tests that load the machine on their own (a thousand streams
    /// through Pushpin), whose waits would otherwise measure the other
    /// trials' load (and slow them down in turn).
    Alone,
}

/// Held for reading by every trial and for writing by an [`Flavor::Alone`]
/// one. (A writer that waits keeps new readers out, so it gets its turn.)
static TURNS: RwLock<()> = RwLock::new(());

/// `<area>::<test>` from the area module's `module_path!()` (`it::<area>`).
pub fn trial_name(module_path: &str, test: &str) -> String {
    let area = module_path
        .split_once("::")
        .map_or(module_path, |(_, area)| area);
    format!("{area}::{test}")
}

/// One trial named `name` that runs `body` on a fresh runtime of `flavor`;
/// ignored, or failed under CI, when the service it `needs` is missing.
pub fn trial<F, Fut>(name: String, needs: Option<Service>, flavor: Flavor, body: F) -> Trial
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let services = SERVICES
        .get()
        .expect("main probes the services before it builds the trials");
    let missing = needs.and_then(|service| services.missing(service).map(|why| (service, why)));
    match missing {
        Some((service, why)) if under_ci() => {
            let message = format!(
                "{why}, and it is required under CI (CI is set): {}",
                service.remedy()
            );
            Trial::test(name, move || Err(Failed::from(message)))
        }
        missing => {
            Trial::test(name, move || run(flavor, body)).with_ignored_flag(missing.is_some())
        }
    }
}

/// One trial per backend, named `<area>::<test>::<backend>`.
pub fn per_backend<F, Fut>(module_path: &str, test: &str, backends: &[Setup], body: F) -> Vec<Trial>
where
    F: FnOnce(Setup) -> Fut + Copy + Send + 'static,
    Fut: Future<Output = ()>,
{
    backends
        .iter()
        .map(|&backend| {
            let name = format!(
                "{}::{}",
                trial_name(module_path, test),
                backend.trial_suffix()
            );
            trial(name, backend.needs(), Flavor::MultiThread, move || {
                body(backend)
            })
        })
        .collect()
}

/// Runs `body` to completion on a runtime of its own. A panic in it (a
/// failed assertion) reaches libtest-mimic, which reports the trial failed.
fn run<F, Fut>(flavor: Flavor, body: F) -> Result<(), Failed>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    // A trial that panicked poisons nothing the others need.
    let (_shared, _alone) = match flavor {
        Flavor::Alone => (
            None,
            Some(TURNS.write().unwrap_or_else(PoisonError::into_inner)),
        ),
        _ => (
            Some(TURNS.read().unwrap_or_else(PoisonError::into_inner)),
            None,
        ),
    };
    let runtime = match flavor {
        Flavor::MultiThread | Flavor::Alone => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    }
    .map_err(|e| format!("no Tokio runtime: {e}"))?;
    runtime.block_on(body());
    Ok(())
}

/// The trials of an area module. Each group lists test functions by how
/// they run; a function listed nowhere is never called, and the
/// `dead_code` lint says so.
///
/// ```text
/// pub fn tests() -> Vec<Trial> {
///     crate::trials![
///         needs_nothing => [a_test],            // async fn(): <area>::a_test, on SQLite
///         current_thread => [a_timing_test],    // the same, on a current-thread runtime
///         needs_postgres => [a_fault_test],     // async fn() on PostgreSQL only
///         needs_pushpin => [a_grip_test],       // async fn() that starts a Pushpin
///         alone_with_pushpin => [a_scale_test], // the same, with no other trial running
///         on_both_backends => [a_storage_test], // async fn(Setup): ::sqlite, ::postgres
///         on_every_path => [a_contract_test],   // ... and ::through_pushpin
///     ]
/// }
/// ```
#[macro_export]
macro_rules! trials {
    ($($group:ident => [$($test:ident),* $(,)?]),* $(,)?) => {{
        let mut trials: ::std::vec::Vec<::libtest_mimic::Trial> = ::std::vec::Vec::new();
        $($($crate::trials!(@$group trials $test);)*)*
        trials
    }};
    (@needs_nothing $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, None, MultiThread)
    };
    (@current_thread $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, None, CurrentThread)
    };
    (@needs_postgres $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, Some($crate::helpers::Service::Postgres), MultiThread)
    };
    // Redis tests exist only with the `redis` feature (their functions are
    // compiled out without it, and so are their trials).
    (@needs_redis $trials:ident $test:ident) => {
        #[cfg(feature = "redis")]
        $crate::trials!(@one $trials $test, Some($crate::helpers::Service::Redis), MultiThread)
    };
    (@needs_pushpin $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, Some($crate::helpers::Service::Pushpin), MultiThread)
    };
    (@alone $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, None, Alone)
    };
    (@alone_with_pushpin $trials:ident $test:ident) => {
        $crate::trials!(@one $trials $test, Some($crate::helpers::Service::Pushpin), Alone)
    };
    (@one $trials:ident $test:ident, $needs:expr, $flavor:ident) => {
        $trials.extend([$crate::helpers::trial(
            $crate::helpers::trial_name(module_path!(), stringify!($test)),
            $needs,
            $crate::helpers::Flavor::$flavor,
            $test,
        )])
    };
    (@on_both_backends $trials:ident $test:ident) => {
        $trials.extend($crate::helpers::per_backend(
            module_path!(),
            stringify!($test),
            &[$crate::helpers::Setup::Sqlite, $crate::helpers::Setup::Postgres],
            $test,
        ))
    };
    (@on_every_path $trials:ident $test:ident) => {
        $trials.extend($crate::helpers::per_backend(
            module_path!(),
            stringify!($test),
            &[
                $crate::helpers::Setup::Sqlite,
                $crate::helpers::Setup::Postgres,
                $crate::helpers::Setup::Pushpin,
            ],
            $test,
        ))
    };
}

/// Runs `$body` with `$db` naming the sqlx database type (`sqlx::Postgres`
/// or `sqlx::Sqlite`) of the event log of `$backend`, for calls generic
/// over it such as `events.begin::<$db>()`.
#[macro_export]
macro_rules! on_backend {
    ($backend:expr, $db:ident => $body:expr) => {
        match $backend {
            $crate::helpers::Setup::Postgres => {
                type $db = sqlx::Postgres;
                $body
            }
            $crate::helpers::Setup::Sqlite | $crate::helpers::Setup::Pushpin => {
                type $db = sqlx::Sqlite;
                $body
            }
        }
    };
}
