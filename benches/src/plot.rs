//! The flatness plot: creates/s and deletes/s per bucket against namespaces alive, nsagent vs.
//! the naive floor, the median of the runs as a line and every run as a dot. SVG, so that it
//! needs no fonts on the machine (the viewer renders the text).

use anyhow::Context;
use plotters::prelude::*;
use serde_json::Value;

const NSAGENT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const FLOOR: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// (alive, rate) points of one bucket series: creates are counted at the bucket's end, deletes
/// at its start (the host empties from `n` down).
fn points(rates: &Value, size: usize, n: usize, deletes: bool) -> Vec<(f64, f64)> {
    let rates = rates.as_array().map(Vec::as_slice).unwrap_or_default();
    rates
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let alive = if deletes {
                n.saturating_sub(i * size)
            } else {
                ((i + 1) * size).min(n)
            };
            Some((alive as f64, r.as_f64()?))
        })
        .collect()
}

pub fn flatness_svg(report: &Value, path: &std::path::Path) -> anyhow::Result<()> {
    let size = report["params"]["bucket"].as_u64().unwrap_or(500) as usize;
    let n = report["params"]["flat"].as_u64().unwrap_or(0) as usize;
    let r = &report["results"];
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).context("plot")?;
    let panels = root.split_evenly((1, 2));
    for (panel, (key, title)) in panels.iter().zip([
        ("buckets", "creates/s per bucket"),
        ("delete_buckets", "deletes/s per bucket (until freed)"),
    ]) {
        let deletes = key == "delete_buckets";
        let series = [
            ("nsagent", &r["flat_nsagent"], NSAGENT),
            ("naive floor", &r["flat_floor"], FLOOR),
        ];
        let mut ymax = 1.0f64;
        for (_, m, _) in &series {
            for run in m["runs"].as_array().map(Vec::as_slice).unwrap_or_default() {
                for (_, y) in points(&run[key], size, n, deletes) {
                    ymax = ymax.max(y);
                }
            }
        }
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..ymax * 1.1)
            .context("plot")?;
        chart
            .configure_mesh()
            .x_desc("namespaces alive")
            .y_desc("namespaces/s")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .context("plot")?;
        for (label, m, color) in series {
            for run in m["runs"].as_array().map(Vec::as_slice).unwrap_or_default() {
                chart
                    .draw_series(
                        points(&run[key], size, n, deletes)
                            .into_iter()
                            .map(|p| Circle::new(p, 2, color.mix(0.4).filled())),
                    )
                    .context("plot")?;
            }
            chart
                .draw_series(LineSeries::new(
                    points(&m[key], size, n, deletes),
                    color.stroke_width(2),
                ))
                .context("plot")?
                .label(format!("{label} (median)"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .context("plot")?;
    }
    root.present().context("plot")?;
    Ok(())
}
