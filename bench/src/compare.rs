//! The side-by-side report of `scripts/bench.sh --compare`: the same
//! scenarios run against eventstream-rocket and django-eventstream in one
//! run, as a Markdown table of figures and ratios and a chart of the
//! ratios (how many times better ours is: higher throughput, lower latency
//! and memory all count above 1).

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::Options;

const OURS: &str = "eventstream-rocket";
const PEER: &str = "django-eventstream";

/// A median and the result it came from.
type Median<'a> = (f64, &'a Value);

/// The median of the results of `server` for `scenario`, by `value`, with
/// the result it came from; `via` names the proxy of runs through one
/// (`--via`), `None` for direct runs.
fn median<'a>(
    results: &'a [Value],
    server: &str,
    (scenario, via): (&str, Option<&str>),
    value: impl Fn(&Value) -> Option<f64>,
) -> Option<Median<'a>> {
    let mut found: Vec<(f64, &Value)> = results
        .iter()
        .filter(|result| {
            result["scenario"] == scenario
                && result["label"] == server
                && result["via"].as_str() == via
        })
        .filter_map(|result| Some((value(result)?, result)))
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.get(found.len() / 2).copied()
}

/// One compared figure.
struct Row {
    /// Its name on the chart.
    short: &'static str,
    what: String,
    ours: f64,
    peer: f64,
    unit: &'static str,
    /// Higher is better (throughput) or lower is better (latency, memory).
    higher_is_better: bool,
}

impl Row {
    /// How many times better ours is.
    fn ratio(&self) -> f64 {
        if self.higher_is_better {
            self.ours / self.peer.max(f64::MIN_POSITIVE)
        } else {
            self.peer / self.ours.max(f64::MIN_POSITIVE)
        }
    }
}

/// The medians of one scenario for both servers: ours, then the peer's.
fn both<'a>(
    results: &'a [Value],
    scenario: &str,
    value: impl Fn(&Value) -> Option<f64>,
) -> Result<(Median<'a>, Median<'a>), String> {
    both_via(results, (scenario, None), value)
        .ok_or_else(|| format!("compare: no {scenario} result for both servers"))
}

/// [`both`], for runs direct or through a proxy; `None` when a server has
/// no such run.
fn both_via<'a>(
    results: &'a [Value],
    runs: (&str, Option<&str>),
    value: impl Fn(&Value) -> Option<f64>,
) -> Option<(Median<'a>, Median<'a>)> {
    let ours = median(results, OURS, runs, &value)?;
    let peer = median(results, PEER, runs, &value)?;
    Some((ours, peer))
}

fn rows(results: &[Value]) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let ((ours, ours_run), (peer, peer_run)) = both(results, "fanout", |result| {
        result["frames_per_sec"].as_f64()
    })?;
    rows.push(Row {
        short: "fan-out",
        what: format!(
            "fan-out, frames/s ({} subscribers; peer: {}, its best)",
            ours_run["subscribers"], peer_run["subscribers"]
        ),
        ours,
        peer,
        unit: "",
        higher_is_better: true,
    });
    for (key, name, short) in [
        ("p50_ms", "p50", "latency p50"),
        ("p99_ms", "p99", "latency p99"),
    ] {
        let ((ours, run), (peer, _)) =
            both(results, "latency", |result| result["latency"][key].as_f64())?;
        rows.push(Row {
            short,
            what: format!(
                "latency {name}, {} subscribers × {} events/s",
                run["subscribers"], run["rate"]
            ),
            ours,
            peer,
            unit: " ms",
            higher_is_better: false,
        });
    }
    let ((ours, run), (peer, _)) = both(results, "memory", |result| {
        result["server_bytes_per_connection"].as_f64()
    })?;
    rows.push(Row {
        short: "idle memory",
        what: format!(
            "idle memory per connection ({} connections, server RSS)",
            run["subscribers"]
        ),
        ours: ours / 1024.0,
        peer: peer / 1024.0,
        unit: " KB",
        higher_is_better: false,
    });
    // Both behind the same Pushpin, when the run had one: on a channel
    // warmed up by earlier events, and on a fresh one.
    for (warm, channel) in [(true, "warm"), (false, "fresh")] {
        for (key, name) in [("p50_ms", "p50"), ("p99_ms", "p99")] {
            let ours = grip_median(results, OURS, warm, key);
            let peer = grip_median(results, PEER, warm, key);
            if let (Some((ours, run)), Some((peer, _))) = (ours, peer) {
                rows.push(Row {
                    short: match (warm, name) {
                        (true, "p50") => "Pushpin p50",
                        (true, _) => "Pushpin p99",
                        (false, "p50") => "fresh p50",
                        (false, _) => "fresh p99",
                    },
                    what: format!(
                        "through Pushpin, {channel} channel: latency {name}, {} subscribers × {} events/s",
                        run["subscribers"], run["rate"]
                    ),
                    ours,
                    peer,
                    unit: " ms",
                    higher_is_better: false,
                });
            }
        }
    }
    Ok(rows)
}

/// The control origins run through Pushpin next to both servers.
const CONTROLS: [&str; 2] = [
    "control: plain GRIP origin",
    "control: GRIP origin, our Grip-Channel",
];

/// The median of `label`'s latency runs through Pushpin, warm (after a
/// warm-up) or on a fresh channel, by `key` of the latency.
fn grip_median<'a>(results: &'a [Value], label: &str, warm: bool, key: &str) -> Option<Median<'a>> {
    grip_median_of(results, label, warm, |result| {
        result["latency"][key].as_f64()
    })
}

/// [`grip_median`] of any figure of the runs.
fn grip_median_of<'a>(
    results: &'a [Value],
    label: &str,
    warm: bool,
    value: impl Fn(&Value) -> Option<f64>,
) -> Option<Median<'a>> {
    let mut found: Vec<(f64, &Value)> = results
        .iter()
        .filter(|result| {
            result["scenario"] == "latency"
                && result["label"] == label
                && result["via"] == "pushpin"
                && (result["warmup_seconds"].as_u64().unwrap_or(0) > 0) == warm
        })
        .filter_map(|result| Some((value(result)?, result)))
        .collect();
    found.sort_by(|a, b| a.0.total_cmp(&b.0));
    found.get(found.len() / 2).copied()
}

/// Both servers and the control origins through Pushpin, warm and fresh:
/// where a figure is the proxy's, the controls pay it too.
fn grip_table(results: &[Value]) -> Option<String> {
    let labels = [OURS, PEER, CONTROLS[0], CONTROLS[1]];
    let mut text = format!(
        "| through Pushpin, median of the rounds | {} |\n|---|---|---|---|---|\n",
        labels.join(" | ")
    );
    let mut any = false;
    for (warm, channel) in [(true, "warm channel"), (false, "fresh channel")] {
        for (key, name) in [("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")] {
            let cells: Vec<String> = labels
                .iter()
                .map(|label| match grip_median(results, label, warm, key) {
                    Some((value, _)) => {
                        any = true;
                        figure(value, " ms")
                    }
                    None => "–".to_owned(),
                })
                .collect();
            text.push_str(&format!("| {channel}, {name} | {} |\n", cells.join(" | ")));
        }
    }
    // Pushpin refreshes a fresh channel's streams a second after its first
    // subscription: a server that takes longer to connect them all gets
    // the refresh over before events flow.
    let cells: Vec<String> = labels
        .iter()
        .map(|label| {
            grip_median_of(results, label, false, |result| {
                result["subscribe_seconds"].as_f64()
            })
            .map_or("–".to_owned(), |(seconds, _)| format!("{seconds:.2} s"))
        })
        .collect();
    text.push_str(&format!(
        "| fresh channel, all subscribers connected in | {} |\n",
        cells.join(" | ")
    ));
    any.then_some(text)
}

fn figure(value: f64, unit: &str) -> String {
    if value >= 100.0 {
        format!("{}{unit}", thousands(value.round() as u64))
    } else {
        format!("{value:.1}{unit}")
    }
}

pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn markdown(rows: &[Row], chart: &str, grip: Option<&str>) -> String {
    let mut text = String::from(
        "| | eventstream-rocket | django-eventstream | ours, times better |\n|---|---|---|---|\n",
    );
    for row in rows {
        text.push_str(&format!(
            "| {} | {} | {} | {:.1}× |\n",
            row.what,
            figure(row.ours, row.unit),
            figure(row.peer, row.unit),
            row.ratio()
        ));
    }
    text.push_str(&format!("\n![ratios]({chart})\n"));
    if let Some(grip) = grip {
        text.push('\n');
        text.push_str(grip);
    }
    text
}

fn draw(path: &Path, rows: &[Row]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let top = rows.iter().map(Row::ratio).fold(2.0, f64::max) * 2.0;
    let names: Vec<&str> = rows.iter().map(|row| row.short).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "eventstream-rocket vs django-eventstream: times better",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..rows.len() as f64, (0.5..top).log_scale())
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let index = x.floor() as usize;
            if (x - index as f64 - 0.5).abs() < 0.01 {
                names.get(index).copied().unwrap_or("").to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("times better (log)")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(index, row)| {
            let x = index as f64;
            Rectangle::new(
                [(x + 0.2, 0.5), (x + 0.8, row.ratio())],
                BLUE.mix(0.7).filled(),
            )
        }))
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(index, row)| {
            Text::new(
                format!("{:.1}×", row.ratio()),
                (index as f64 + 0.38, row.ratio() * 1.45),
                ("sans-serif", 16),
            )
        }))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// The markers the table stands between in BENCHMARKS.md.
const START: &str = "<!-- compare:start -->";
const END: &str = "<!-- compare:end -->";

/// `text` with what stands between the markers replaced by `table`.
fn between_markers(text: &str, table: &str) -> Option<String> {
    let (head, rest) = text.split_once(START)?;
    let (_, tail) = rest.split_once(END)?;
    Some(format!("{head}{START}{table}{END}{tail}"))
}

/// `compare --input compare.jsonl --out-dir DIR --markdown FILE`: writes
/// `DIR/compare.png` and the table (linking the chart as `--chart-link`).
pub(crate) fn render(options: &Options) -> Result<String, String> {
    let input = options.text("input", "target/bench/compare.jsonl");
    let out_dir = options.text("out-dir", "target/bench");
    let markdown_path = options.text("markdown", "target/bench/compare.md");
    let link = options.text("chart-link", "docs/bench/compare.png");
    let results = crate::chart::read_results(&input)?;
    let rows = rows(&results)?;
    crate::chart::register_font()?;
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{out_dir}: {e}"))?;
    let chart = Path::new(&out_dir).join("compare.png");
    draw(&chart, &rows)?;
    let grip = grip_table(&results);
    let table = markdown(&rows, &link, grip.as_deref());
    std::fs::write(&markdown_path, &table).map_err(|e| format!("{markdown_path}: {e}"))?;
    if let Some(into) = options.maybe("into") {
        let date = options.text("date", "today");
        let text = std::fs::read_to_string(&into).map_err(|e| format!("{into}: {e}"))?;
        let stamp = format!(
            "Measured {date} by `scripts/bench.sh --compare` (release build, this 2-core machine, \
             SQLite, `process` durability; medians of three interleaved rounds; the Pushpin rows \
             with Pushpin 1.36 configured as the README says)."
        );
        let replaced = between_markers(&text, &format!("\n{stamp}\n\n{table}"))
            .ok_or_else(|| format!("{into}: the markers {START} / {END} are missing"))?;
        std::fs::write(&into, replaced).map_err(|e| format!("{into}: {e}"))?;
    }
    Ok(serde_json::json!({
        "scenario": "compare",
        "chart": chart,
        "markdown": markdown_path,
        "ratios": rows.iter().map(|row| (row.what.clone(), row.ratio())).collect::<Vec<_>>(),
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_count_lower_latency_and_higher_throughput_as_better() {
        let line = |json: &str| serde_json::from_str::<Value>(json).expect("json");
        let results = [
            line(
                r#"{"scenario":"fanout","label":"eventstream-rocket","subscribers":1000,"frames_per_sec":800000}"#,
            ),
            line(
                r#"{"scenario":"fanout","label":"django-eventstream","subscribers":100,"frames_per_sec":8000}"#,
            ),
            line(
                r#"{"scenario":"latency","label":"eventstream-rocket","subscribers":100,"rate":20,"latency":{"p50_ms":2.0,"p99_ms":4.0}}"#,
            ),
            line(
                r#"{"scenario":"latency","label":"django-eventstream","subscribers":100,"rate":20,"latency":{"p50_ms":10.0,"p99_ms":20.0}}"#,
            ),
            line(
                r#"{"scenario":"memory","label":"eventstream-rocket","subscribers":1000,"server_bytes_per_connection":40960}"#,
            ),
            line(
                r#"{"scenario":"memory","label":"django-eventstream","subscribers":1000,"server_bytes_per_connection":204800}"#,
            ),
        ];
        let rows = rows(&results).expect("rows");
        let ratios: Vec<f64> = rows.iter().map(Row::ratio).collect();
        assert_eq!(ratios, [100.0, 5.0, 5.0, 5.0]);
        let table = markdown(&rows, "c.png", None);
        assert!(table.contains("| 800,000 | 8,000 | 100.0× |"), "{table}");
        assert!(table.contains("| 40.0 KB | 200 KB | 5.0× |"), "{table}");
    }

    #[test]
    fn the_table_replaces_what_stands_between_the_markers() {
        let text = format!("intro\n{START}\nold table\n{END}\noutro\n");
        assert_eq!(
            between_markers(&text, "\nnew\n").as_deref(),
            Some(format!("intro\n{START}\nnew\n{END}\noutro\n").as_str())
        );
        assert_eq!(between_markers("no markers", "x"), None);
    }

    #[test]
    fn runs_through_a_proxy_are_compared_apart_from_direct_ones() {
        let line = |json: &str| serde_json::from_str::<Value>(json).expect("json");
        let mut results: Vec<Value> = [
            r#"{"scenario":"fanout","label":"eventstream-rocket","subscribers":1000,"frames_per_sec":800000}"#,
            r#"{"scenario":"fanout","label":"django-eventstream","subscribers":100,"frames_per_sec":8000}"#,
            r#"{"scenario":"latency","label":"eventstream-rocket","subscribers":100,"rate":20,"latency":{"p50_ms":2.0,"p99_ms":4.0}}"#,
            r#"{"scenario":"latency","label":"django-eventstream","subscribers":100,"rate":20,"latency":{"p50_ms":10.0,"p99_ms":20.0}}"#,
            r#"{"scenario":"memory","label":"eventstream-rocket","subscribers":1000,"server_bytes_per_connection":40960}"#,
            r#"{"scenario":"memory","label":"django-eventstream","subscribers":1000,"server_bytes_per_connection":204800}"#,
        ]
        .into_iter()
        .map(line)
        .collect();
        assert_eq!(
            rows(&results).expect("rows").len(),
            4,
            "no proxy rows without proxy runs"
        );
        results.extend([
            line(
                r#"{"via":"pushpin","label":"eventstream-rocket","scenario":"latency","subscribers":1000,"rate":50,"warmup_seconds":2,"latency":{"p50_ms":50.0,"p99_ms":100.0}}"#,
            ),
            line(
                r#"{"via":"pushpin","label":"django-eventstream","scenario":"latency","subscribers":1000,"rate":50,"warmup_seconds":2,"latency":{"p50_ms":60.0,"p99_ms":150.0}}"#,
            ),
        ]);
        let rows = rows(&results).expect("rows");
        let ratios: Vec<f64> = rows.iter().map(Row::ratio).collect();
        assert_eq!(
            ratios,
            [100.0, 5.0, 5.0, 5.0, 1.2, 1.5],
            "direct rows unchanged"
        );
        assert!(
            rows[5]
                .what
                .starts_with("through Pushpin, warm channel: latency p99, 1000 subscribers")
        );
        assert_eq!(rows.len(), 6, "no fresh-channel rows without such runs");
        results.extend([
            line(
                r#"{"via":"pushpin","label":"eventstream-rocket","scenario":"latency","subscribers":1000,"rate":50,"warmup_seconds":0,"latency":{"p50_ms":40.0,"p99_ms":900.0,"max_ms":1000.0}}"#,
            ),
            line(
                r#"{"via":"pushpin","label":"django-eventstream","scenario":"latency","subscribers":1000,"rate":50,"warmup_seconds":0,"latency":{"p50_ms":80.0,"p99_ms":300.0}}"#,
            ),
            line(
                r#"{"via":"pushpin","label":"control: plain GRIP origin","scenario":"latency","subscribers":1000,"rate":50,"warmup_seconds":0,"latency":{"p50_ms":30.0,"p99_ms":90.0}}"#,
            ),
        ]);
        let rows = super::rows(&results).expect("rows");
        assert_eq!(
            rows[7].what,
            "through Pushpin, fresh channel: latency p99, 1000 subscribers × 50 events/s"
        );
        assert!((rows[7].ratio() - 1.0 / 3.0).abs() < 1e-9);
        let table = grip_table(&results).expect("a table");
        assert!(
            table.contains("| fresh channel, p99 | 900 ms | 300 ms | 90.0 ms | – |"),
            "{table}"
        );
        assert!(
            table.contains("| fresh channel, max | 1,000 ms | – | – | – |"),
            "{table}"
        );
    }
}
