//! `eventstream-bench`: a load generator for any server that speaks the
//! eventstream-rocket SSE contract (see PROTOCOL.md). It talks only HTTP and
//! SSE, over real TCP, and targets loopback addresses.
//!
//! ```text
//! eventstream-bench fanout  --url http://127.0.0.1:8000 --subscribers 1000 --events 2000
//! eventstream-bench latency --url http://127.0.0.1:8000 --subscribers 100 --rate 100 --seconds 10
//! ```
//!
//! Every run is bounded in connections and time and stops by itself.

mod publish;
mod scenario;
mod sse;

use std::collections::HashMap;
use std::process::ExitCode;

/// Parsed `--name value` options.
pub(crate) struct Options(HashMap<String, String>);

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut map = HashMap::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            let value = iter
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            map.insert(name.to_owned(), value.clone());
        }
        Ok(Options(map))
    }

    /// A string option with a default.
    pub(crate) fn text(&self, name: &str, default: &str) -> String {
        self.0
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    /// An optional string option.
    pub(crate) fn maybe(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// A numeric option with a default.
    pub(crate) fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.0.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name} must be a whole number, got {text:?}")),
        }
    }
}

const USAGE: &str = "usage: eventstream-bench <fanout|latency> --url URL [--channel C] [--publish-key K] \
[--subscribers N] [--events N] [--in-flight N] [--rate N] [--seconds N]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((scenario, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match Options::parse(rest) {
        Err(e) => Err(e),
        Ok(options) => match scenario.as_str() {
            "fanout" => scenario::fanout(&options).await,
            "latency" => scenario::latency(&options).await,
            other => Err(format!("unknown scenario {other:?}\n{USAGE}")),
        },
    };
    match result {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventstream-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
