//! Charts from sweep results (one JSON object per line): latency and
//! delivered frames/s against the number of subscribers, as PNG. The font
//! is embedded (DejaVu Sans from the `dejavu` crate), so rendering needs no
//! system fonts.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::Options;

const WIDTH: u32 = 900;
const HEIGHT: u32 = 560;

pub(crate) fn register_font() -> Result<(), String> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "cannot load the embedded font".to_owned())
}

/// Series by label: (subscribers, value) points, sorted.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

fn collect(results: &[Value], scenario: &str, value: impl Fn(&Value) -> Option<f64>) -> Series {
    let mut series: Series = BTreeMap::new();
    for result in results
        .iter()
        .filter(|result| result["scenario"] == scenario)
    {
        let (Some(subscribers), Some(value)) = (result["subscribers"].as_f64(), value(result))
        else {
            continue;
        };
        let label = result["label"].as_str().unwrap_or(scenario).to_owned();
        series.entry(label).or_default().push((subscribers, value));
    }
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    series
}

fn draw(path: &Path, title: &str, y_label: &str, series: &Series) -> Result<(), String> {
    let points: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    if points.is_empty() {
        return Err(format!("no data for {title}"));
    }
    let x_max = points.iter().map(|p| p.0).fold(1.0, f64::max) * 1.3;
    let x_min = points.iter().map(|p| p.0).fold(f64::MAX, f64::min).max(1.0) / 1.3;
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max.max(1.0))
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("subscribers")
        .y_desc(y_label)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| fail(&e))?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (index, (label, points)) in series.iter().enumerate() {
        let color = palette[index % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| fail(&e))?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .iter()
                    .map(|point| Circle::new(*point, 4, color.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// The results in `path`, one JSON object per line (lines that are not
/// one are skipped).
pub(crate) fn read_results(path: &str) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect())
}

/// `chart --input results.jsonl --out-dir DIR`
pub(crate) fn render(options: &Options) -> Result<String, String> {
    let input = options.text("input", "target/bench/results.jsonl");
    let out_dir = options.text("out-dir", "target/bench");
    let results = read_results(&input)?;
    register_font()?;
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{out_dir}: {e}"))?;
    let dir = Path::new(&out_dir);
    let ms = |key: &'static str| move |result: &Value| result["latency"][key].as_f64();
    let mut latency: Series = BTreeMap::new();
    for (key, name) in [("p50_ms", "p50"), ("p99_ms", "p99")] {
        for (label, points) in collect(&results, "latency", ms(key)) {
            latency.insert(format!("{label} {name}"), points);
        }
    }
    draw(
        &dir.join("latency-vs-subscribers.png"),
        "Publish-to-receive latency",
        "milliseconds",
        &latency,
    )?;
    let frames = collect(&results, "fanout", |result| {
        result["frames_per_sec"].as_f64()
    });
    draw(
        &dir.join("frames-vs-subscribers.png"),
        "Frames delivered per second (fan-out, one channel)",
        "frames/s",
        &frames,
    )?;
    Ok(serde_json::json!({ "scenario": "chart", "charts": [
        dir.join("latency-vs-subscribers.png"), dir.join("frames-vs-subscribers.png")
    ] })
    .to_string())
}
