//! The no-regression report of `scripts/bench.sh --regress`: the same
//! loads run against a server built from an older commit ("before") and
//! this checkout's ("after"), interleaved; per figure, the medians of both
//! sides, the change, and whether it is a regression: more than 10 % worse
//! *and* outside the range the before-runs spanned (a noisy machine moves
//! single runs by about that much).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Options;

/// One compared figure: its name, and whether higher is better.
type Figure = (String, bool);

/// The figure a result carries, by scenario: (name, value, higher is better).
fn figure_of(result: &Value) -> Option<(String, f64, bool)> {
    let label = result["label"].as_str()?;
    let store = label.split_whitespace().nth(1).unwrap_or("");
    Some(match result["scenario"].as_str()? {
        "fanout" => (
            "fan-out, 1,000 subscribers (frames/s)".to_owned(),
            result["frames_per_sec"].as_f64()?,
            true,
        ),
        "replay" => (
            "replay of 1,000 missed events, p50 (ms)".to_owned(),
            result["replay"]["p50_ms"].as_f64()?,
            false,
        ),
        "storm" => (
            "10,000 clients resuming (s until all)".to_owned(),
            result["all_resumed_seconds"].as_f64()?,
            false,
        ),
        _ => (
            format!("durable publish, {store} (events/s)"),
            result["events_per_sec"].as_f64()?,
            true,
        ),
    })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

fn shown(values: &[f64]) -> String {
    values
        .iter()
        .map(|value| {
            if *value >= 100.0 {
                crate::compare::thousands(value.round() as u64)
            } else {
                format!("{value:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as a Markdown table, and whether anything regressed or
/// lost events.
pub(crate) fn report(results: &[Value]) -> Result<(String, bool), String> {
    // figure -> side -> (values, lost)
    let mut runs: BTreeMap<Figure, BTreeMap<String, (Vec<f64>, u64)>> = BTreeMap::new();
    let mut order: Vec<Figure> = Vec::new();
    for result in results {
        let Some((what, value, higher)) = figure_of(result) else {
            continue;
        };
        let side = result["label"]
            .as_str()
            .and_then(|label| label.split_whitespace().next())
            .unwrap_or("")
            .to_owned();
        let figure = (what, higher);
        if !runs.contains_key(&figure) {
            order.push(figure.clone());
        }
        let entry = runs.entry(figure).or_default().entry(side).or_default();
        entry.0.push(value);
        entry.1 += result["lost"].as_u64().unwrap_or(0);
    }
    let mut table = String::from(
        "| | before | after | change of medians | regression |\n|---|---|---|---|---|\n",
    );
    let mut failed = false;
    for figure in order {
        let sides = &runs[&figure];
        let (Some((before, lost_before)), Some((after, lost_after))) =
            (sides.get("before"), sides.get("after"))
        else {
            return Err(format!(
                "regress: {} lacks a before or an after run",
                figure.0
            ));
        };
        let (median_before, median_after) = (median(before), median(after));
        let change = (median_after - median_before) / median_before * 100.0;
        let higher = figure.1;
        let worse = if higher { -change } else { change };
        let outside = if higher {
            median_after < before.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            median_after > before.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        };
        let regression = worse > 10.0 && outside;
        let lost = lost_before + lost_after;
        failed |= regression || lost > 0;
        table.push_str(&format!(
            "| {} | {} | {} | {change:+.1} % | {}{} |\n",
            figure.0,
            shown(before),
            shown(after),
            if regression { "**yes**" } else { "no" },
            if lost > 0 {
                format!(", {lost} lost")
            } else {
                String::new()
            },
        ));
    }
    Ok((table, failed))
}

/// `regress --input regress.jsonl`: prints the table; fails when a figure
/// regressed or a run lost events.
pub(crate) fn render(options: &Options) -> Result<String, String> {
    let input = options.text("input", "target/bench/regress.jsonl");
    let results = crate::chart::read_results(&input)?;
    let (table, failed) = report(&results)?;
    eprint!("{table}");
    if failed {
        return Err("regress: a figure regressed or a run lost events (table above)".into());
    }
    Ok(serde_json::json!({ "scenario": "regress", "regressions": 0 }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> Value {
        serde_json::from_str(json).expect("json")
    }

    #[test]
    fn a_regression_is_worse_by_a_tenth_and_outside_the_before_range() {
        let mut results: Vec<Value> = [100.0, 110.0, 105.0]
            .iter()
            .map(|value| {
                line(&format!(
                    r#"{{"scenario":"fanout","label":"before","frames_per_sec":{value}}}"#
                ))
            })
            .collect();
        for value in [104.0, 99.0, 101.0] {
            results.push(line(&format!(
                r#"{{"scenario":"fanout","label":"after","frames_per_sec":{value}}}"#
            )));
        }
        let (table, failed) = report(&results).expect("a report");
        assert!(!failed, "{table}");
        assert!(
            table.contains("| 100, 110, 105 | 104, 99.00, 101 | -3.8 % | no |"),
            "{table}"
        );
        results.truncate(3);
        for value in [80.0, 85.0, 90.0] {
            results.push(line(&format!(
                r#"{{"scenario":"fanout","label":"after","frames_per_sec":{value}}}"#
            )));
        }
        let (table, failed) = report(&results).expect("a report");
        assert!(failed, "{table}");
        assert!(table.contains("**yes**"), "{table}");
    }

    #[test]
    fn lower_is_better_for_times_and_lost_events_fail() {
        let results: Vec<Value> = [
            r#"{"scenario":"storm","label":"before","all_resumed_seconds":2.0}"#,
            r#"{"scenario":"storm","label":"after","all_resumed_seconds":1.0,"lost":3}"#,
        ]
        .into_iter()
        .map(line)
        .collect();
        let (table, failed) = report(&results).expect("a report");
        assert!(failed, "lost events fail: {table}");
        assert!(table.contains("-50.0 % | no, 3 lost |"), "{table}");
    }
}
