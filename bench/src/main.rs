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

mod chart;
mod compare;
mod publish;
mod regress;
mod scenario;
mod sse;
mod stages;

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

const USAGE: &str = "usage: eventstream-bench <scenario> --url URL [options]
scenarios:
  fanout   --subscribers N --events N --in-flight N      frames/s delivered, loss
  latency  --subscribers N --rate N --seconds N [--warmup S] [--in-flight N] [--split 1] [--stages METRICS_URL] [--from due|send]  due-to-parse latency
  join     --subscribers N --rate N --warmup S --seconds N [--presence-watch 1]
                                                         subscribers joining while events flow
  publish  --publishers N --in-flight N --channels N --seconds N   sustained publish rate
  replay   --events N --runs N                           time to replay N missed events
  storm    --clients N --missed N                        reconnect storm with Last-Event-ID
  memory   --subscribers N --server-pid PID              server RSS per idle stream
  chart    --input results.jsonl --out-dir DIR           PNG charts from sweep results
  compare  --input compare.jsonl --out-dir DIR --markdown FILE [--into BENCHMARKS.md --date D]
                                                         side-by-side table and chart
  regress  --input regress.jsonl                          before/after medians; fails on a regression
common: --wave N (connects at a time, 256) --channel C (bench) --publish-key K --publish-base URL --publish-url URL --stream-path P
        --label TEXT (stored with the result) --via PROXY (the same, for runs through a proxy)
        --out FILE (append the JSON result)";

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
            "join" => scenario::join(&options).await,
            "publish" => scenario::publish(&options).await,
            "replay" => scenario::replay(&options).await,
            "storm" => scenario::storm(&options).await,
            "memory" => scenario::memory(&options).await,
            "chart" => chart::render(&options),
            "compare" => compare::render(&options),
            "regress" => regress::render(&options),
            other => Err(format!("unknown scenario {other:?}\n{USAGE}")),
        },
    };
    let options = Options::parse(rest).ok();
    match result {
        Ok(report) => {
            // `--label` and `--via` are stored with the result as given.
            let mut report = report;
            for name in ["via", "label"] {
                if let Some(value) = options.as_ref().and_then(|options| options.maybe(name)) {
                    report = report.replacen(
                        '{',
                        &format!("{{\"{name}\":{},", serde_json::Value::from(value)),
                        1,
                    );
                }
            }
            println!("{report}");
            if let Some(out) = options.as_ref().and_then(|options| options.maybe("out")) {
                use std::io::Write;
                let written = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&out)
                    .and_then(|mut file| writeln!(file, "{report}"));
                if let Err(e) = written {
                    eprintln!("eventstream-bench: cannot write {out}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eventstream-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
