//! Why the stage could not start.

use crate::bus::BusError;
use crate::config::ConfigError;

/// Why the stage could not start; logged before launch aborts.
#[derive(Debug)]
pub(super) enum IgniteError {
    /// A setting is wrong: fix the configuration.
    Config(ConfigError),
    /// The event log could not be opened or migrated.
    Storage(String),
    /// The cross-instance bus could not start.
    Bus(BusError),
}

impl std::fmt::Display for IgniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IgniteError::Config(error) => write!(f, "{error}"),
            IgniteError::Storage(why) => f.write_str(why),
            IgniteError::Bus(error) => write!(f, "broadcast: {error}"),
        }
    }
}

impl From<ConfigError> for IgniteError {
    fn from(error: ConfigError) -> Self {
        IgniteError::Config(error)
    }
}
