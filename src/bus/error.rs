//! Why talking to the bus failed, in words fit for the log and the health
//! check: a server is named without its password, and a password a server
//! echoes back is blanked out.

use std::fmt;
use std::time::Duration;

/// A failure of the bus: starting it, sending a notice, or reading storage
/// to judge one.
#[derive(Debug)]
pub(crate) enum BusError {
    /// The event log's id could not be read (every notice is sealed with
    /// it).
    LogId(sqlx::Error),
    /// `LISTEN` on the notice channel failed.
    Listen(sqlx::Error),
    /// PostgreSQL refused a `NOTIFY`, or gave no connection for it.
    Notify(sqlx::Error),
    /// Storage could not be read to check what a notice says.
    Storage(sqlx::Error),
    /// The server did not answer within `after`; `server` names it
    /// (empty for the database the event log is in).
    NoAnswer { server: String, after: Duration },
    /// Redis refused or failed; `server` is its URL without the password.
    #[cfg(feature = "redis")]
    Redis {
        server: String,
        error: redis::RedisError,
        password: Option<String>,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::LogId(error) => write!(f, "cannot read the event log's id: {error}"),
            BusError::Listen(error) => write!(f, "cannot LISTEN: {error}"),
            BusError::Notify(error) | BusError::Storage(error) => write!(f, "{error}"),
            BusError::NoAnswer { server, after } if server.is_empty() => {
                write!(f, "no answer within {after:?}")
            }
            BusError::NoAnswer { server, after } => {
                write!(f, "{server}: no answer within {after:?}")
            }
            #[cfg(feature = "redis")]
            BusError::Redis {
                server,
                error,
                password,
            } => {
                let text = format!("{server}: {error}");
                match password {
                    Some(password) => f.write_str(&text.replace(password.as_str(), "***")),
                    None => f.write_str(&text),
                }
            }
        }
    }
}

impl std::error::Error for BusError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BusError::LogId(error)
            | BusError::Listen(error)
            | BusError::Notify(error)
            | BusError::Storage(error) => Some(error),
            BusError::NoAnswer { .. } => None,
            #[cfg(feature = "redis")]
            BusError::Redis { error, .. } => Some(error),
        }
    }
}
