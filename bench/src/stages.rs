//! The server's own breakdown of delivery time (`--stages URL`): the
//! `eventstream_delivery_stage_seconds` histogram that eventstream-rocket
//! fills with `delivery_timing = true`, scraped before and after a run and
//! subtracted, so that only the run's events count.

use std::collections::BTreeMap;

/// Cumulative bucket counts per stage: `le` (seconds) → events at or below.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct StageBuckets(BTreeMap<String, Vec<(f64, u64)>>);

const METRIC: &str = "eventstream_delivery_stage_seconds_bucket{";

/// Fetches and parses the scrape at `url` (no series yet before the first
/// timed event).
pub(crate) async fn scrape(url: &str) -> Result<StageBuckets, String> {
    let text = reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("scraping {url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("scraping {url}: {e}"))?;
    parse(&text)
}

/// The bucket lines of the scrape, in the order of their bounds.
fn parse(text: &str) -> Result<StageBuckets, String> {
    let mut stages: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else {
            continue;
        };
        let bad = || format!("cannot read the scrape line {line:?}");
        let (labels, value) = rest.split_once("} ").ok_or_else(bad)?;
        let (mut stage, mut le) = (None, None);
        for label in labels.split(',') {
            let (name, quoted) = label.split_once('=').ok_or_else(bad)?;
            let value = quoted.trim_matches('"');
            match name {
                "stage" => stage = Some(value.to_owned()),
                "le" if value == "+Inf" => le = Some(f64::INFINITY),
                "le" => le = Some(value.parse::<f64>().map_err(|_| bad())?),
                _ => {}
            }
        }
        let count = value
            .split_whitespace()
            .next()
            .and_then(|count| count.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let (Some(stage), Some(le)) = (stage, le) else {
            return Err(bad());
        };
        stages.entry(stage).or_default().push((le, count));
    }
    for buckets in stages.values_mut() {
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    Ok(StageBuckets(stages))
}

/// What `after` counted that `before` had not, per stage, as JSON:
/// `{stage: {count, p50_ms, p99_ms}}`. The percentiles are interpolated
/// within the bucket they fall in (buckets are 1.5 times apart). An error
/// when the run was not timed at all.
pub(crate) fn difference(
    before: &StageBuckets,
    after: &StageBuckets,
) -> Result<serde_json::Value, String> {
    if after.0.is_empty() {
        return Err(format!(
            "the scrape has no {METRIC}...}} series: is delivery_timing on, and is this its metrics_path?"
        ));
    }
    let mut report = serde_json::Map::new();
    for (stage, buckets) in &after.0 {
        let earlier = before.0.get(stage);
        let counted: Vec<(f64, u64)> = buckets
            .iter()
            .map(|(le, count)| {
                let was = earlier
                    .and_then(|b| b.iter().find(|(l, _)| l == le))
                    .map_or(0, |(_, c)| *c);
                (*le, count.saturating_sub(was))
            })
            .collect();
        let total = counted.last().map_or(0, |(_, count)| *count);
        report.insert(
            stage.clone(),
            serde_json::json!({
                "count": total,
                "p50_ms": quantile(&counted, 0.50).map(|s| s * 1000.0),
                "p99_ms": quantile(&counted, 0.99).map(|s| s * 1000.0),
            }),
        );
    }
    Ok(serde_json::Value::Object(report))
}

/// The `q` quantile of cumulative `buckets`, in seconds; `None` when empty.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0_u64);
    for (le, count) in buckets {
        if *count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = (count - below) as f64;
            let fraction = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        (lower, below) = (*le, *count);
    }
    Some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# TYPE eventstream_delivery_stage_seconds histogram
eventstream_delivery_stage_seconds_sum{stage=\"wake\"} 0.5
eventstream_delivery_stage_seconds_count{stage=\"wake\"} 100
eventstream_delivery_stage_seconds_bucket{le=\"0.001\",stage=\"wake\"} 40
eventstream_delivery_stage_seconds_bucket{le=\"0.002\",stage=\"wake\"} 90
eventstream_delivery_stage_seconds_bucket{le=\"0.004\",stage=\"wake\"} 100
eventstream_delivery_stage_seconds_bucket{le=\"+Inf\",stage=\"wake\"} 100
eventstream_delivery_stage_seconds_bucket{stage=\"queue\",le=\"0.001\"} 7
eventstream_delivery_stage_seconds_bucket{stage=\"queue\",le=\"+Inf\"} 7
# EOF
";

    #[test]
    fn percentiles_come_from_the_runs_own_counts() {
        let after = parse(SCRAPE).expect("parses");
        let before = parse(
            "eventstream_delivery_stage_seconds_bucket{le=\"0.001\",stage=\"wake\"} 40\n\
             eventstream_delivery_stage_seconds_bucket{le=\"0.002\",stage=\"wake\"} 40\n\
             eventstream_delivery_stage_seconds_bucket{le=\"0.004\",stage=\"wake\"} 40\n\
             eventstream_delivery_stage_seconds_bucket{le=\"+Inf\",stage=\"wake\"} 40\n",
        )
        .expect("parses");
        let report = difference(&before, &after).expect("timed");
        // The run added 60 events: 50 in (1, 2] ms, 10 in (2, 4] ms.
        assert_eq!(report["wake"]["count"], 60);
        let p50 = report["wake"]["p50_ms"].as_f64().expect("a figure");
        assert!((p50 - 1.6).abs() < 1e-9, "{p50}");
        let p99 = report["wake"]["p99_ms"].as_f64().expect("a figure");
        assert!((p99 - 3.88).abs() < 1e-9, "{p99}");
        assert_eq!(report["queue"]["count"], 7);
    }

    #[test]
    fn a_run_that_was_not_timed_is_an_error() {
        let empty = parse("# EOF\n").expect("parses");
        assert!(difference(&empty, &empty).is_err());
    }

    #[test]
    fn a_scrape_line_it_cannot_read_is_an_error() {
        assert!(
            parse("eventstream_delivery_stage_seconds_bucket{le=\"x\",stage=\"a\"} 1").is_err()
        );
        assert!(parse("eventstream_delivery_stage_seconds_bucket{stage=\"a\"} 1").is_err());
    }
}
