//! PNG charts of a run: the latency distribution (percentile curve),
//! throughput over time, and the slowest ack of each second. Text is drawn
//! with DejaVu Sans when installed (Debian's fonts-dejavu-core); without it
//! the charts have no labels.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use plotters::coord::types::{RangedCoordf64, RangedCoordu64};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::plan::Plan;
use crate::stats::Second;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    })
}

pub fn draw(
    plan: &Plan,
    latencies: &[(&str, &Histogram<u64>)],
    timeline: &BTreeMap<u64, Second>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&plan.charts)?;
    let labels = register_font();
    latency(&format!("{}/latency.png", plan.charts), latencies, labels)?;
    throughput(&format!("{}/throughput.png", plan.charts), timeline, labels)?;
    if timeline.values().any(|t| t.slowest_ack_us > 0) {
        slowest_ack(&format!("{}/slowest-ack.png", plan.charts), timeline, labels)?;
    }
    Ok(())
}

/// Latency by percentile, on a log scale of "nines" (50%, 90%, 99%, 99.9%).
fn latency(path: &str, series: &[(&str, &Histogram<u64>)], labels: bool) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_ms = series.iter().filter(|(_, h)| !h.is_empty()).map(|(_, h)| h.max() as f64 / 1000.0).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root);
    if labels {
        chart.caption("latency by percentile", ("sans-serif", 22));
    }
    let mut chart = chart
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..4f64, 0f64..max_ms * 1.1)?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("percentile").y_desc("ms").x_labels(5).x_label_formatter(&|n| percentile_label(*n));
    } else {
        mesh.disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    for (i, (name, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = (0..=400)
            .map(|step| {
                let nines = step as f64 / 100.0;
                let q = (1.0 - 10f64.powf(-nines)).min(0.99999);
                (nines, h.value_at_quantile(q) as f64 / 1000.0)
            })
            .collect();
        let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        if labels {
            drawn.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    finish(chart, root, labels)
}

/// The percentile at `nines` on the x axis (1: 90%, 2: 99%), as a person
/// writes it: `99.9%`, not `99.900%`.
fn percentile_label(nines: f64) -> String {
    let percent = format!("{:.4}", 100.0 * (1.0 - 10f64.powf(-nines)));
    format!("{}%", percent.trim_end_matches('0').trim_end_matches('.'))
}

/// Picks one figure of a second.
type Pick = fn(&Second) -> u64;

/// Sent, acknowledged and delivered per second.
fn throughput(path: &str, timeline: &BTreeMap<u64, Second>, labels: bool) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    let top = timeline.values().map(|t| t.sent.max(t.acked).max(t.delivered)).max().unwrap_or(1).max(1) as f64;
    let mut chart = over_time(&root, "throughput per second", "per second", timeline, top, labels)?;
    let series: [(&str, Pick); 3] = [("sent", |t| t.sent), ("acked", |t| t.acked), ("delivered", |t| t.delivered)];
    for (i, (name, pick)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(u64, f64)> = timeline.iter().map(|(s, t)| (*s, pick(t) as f64)).collect();
        let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        if labels {
            drawn.label(*name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    finish(chart, root, labels)
}

/// The slowest send→ack of each second: whether a tail is a few stalls or
/// spread over the run.
fn slowest_ack(path: &str, timeline: &BTreeMap<u64, Second>, labels: bool) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    let ms = |t: &Second| t.slowest_ack_us as f64 / 1000.0;
    let top = timeline.values().map(ms).fold(1.0, f64::max);
    let mut chart = over_time(&root, "slowest send→ack of each second", "ms", timeline, top, labels)?;
    let color = Palette99::pick(1).to_rgba();
    // A line through seconds without acks would draw a slowest ack that
    // no ack had: each stretch of seconds with acks is drawn apart, and a
    // lone second as a dot.
    let stretches = stretches_with_acks(timeline);
    for (i, stretch) in stretches.iter().enumerate() {
        let points: Vec<(u64, f64)> = stretch.iter().map(|s| (*s, ms(&timeline[s]))).collect();
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 2, color.filled())))?;
        let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        if labels && i == 0 {
            drawn.label("slowest send→ack").legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    finish(chart, root, labels)
}

/// The seconds with acks, in runs of consecutive seconds.
fn stretches_with_acks(timeline: &BTreeMap<u64, Second>) -> Vec<Vec<u64>> {
    let mut stretches: Vec<Vec<u64>> = Vec::new();
    for (second, _) in timeline.iter().filter(|(_, t)| t.acked > 0) {
        match stretches.last_mut() {
            Some(stretch) if stretch.last().map(|last| last + 1) == Some(*second) => stretch.push(*second),
            _ => stretches.push(vec![*second]),
        }
    }
    stretches
}

/// A white chart with the run's seconds across and 0 to a tenth above
/// `top` up, its caption and axis names drawn when there is text.
fn over_time<'a>(
    root: &DrawingArea<BitMapBackend<'a>, Shift>,
    caption: &str,
    y_desc: &str,
    timeline: &BTreeMap<u64, Second>,
    top: f64,
    labels: bool,
) -> anyhow::Result<ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordu64, RangedCoordf64>>> {
    root.fill(&WHITE)?;
    let last = timeline.keys().last().copied().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(root);
    if labels {
        chart.caption(caption, ("sans-serif", 22));
    }
    let mut chart =
        chart.margin(15).x_label_area_size(40).y_label_area_size(70).build_cartesian_2d(0u64..last, 0f64..top * 1.1)?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("seconds since the agents started").y_desc(y_desc);
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw()?;
    Ok(chart)
}

/// Draws the legend (when there is text) and writes the file.
fn finish<'a, X: Ranged, Y: Ranged>(
    mut chart: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    root: DrawingArea<BitMapBackend<'a>, Shift>,
    labels: bool,
) -> anyhow::Result<()> {
    if labels {
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::stats::Second;

    /// Seconds without acks (the server paused, say) break the line rather
    /// than being drawn through, and the timeline's missing seconds too.
    #[test]
    fn seconds_without_acks_split_the_slowest_ack_line() {
        let acked = |acked| Second { acked, slowest_ack_us: 1_000, ..Default::default() };
        let timeline: BTreeMap<u64, Second> =
            [(0, acked(0)), (1, acked(5)), (2, acked(3)), (3, acked(0)), (4, acked(1)), (6, acked(2)), (7, acked(2))]
                .into_iter()
                .collect();
        assert_eq!(super::stretches_with_acks(&timeline), vec![vec![1, 2], vec![4], vec![6, 7]]);
    }

    #[test]
    fn percentiles_are_labelled_as_people_write_them() {
        let labels: Vec<String> = [0.0, 1.0, 2.0, 3.0, 4.0].into_iter().map(super::percentile_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }
}
