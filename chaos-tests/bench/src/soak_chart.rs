//! `soak.svg`: what the soak suite sampled, over time: VmRSS (top) and data directory size
//! (bottom) of every process, one line each, with the end of the warm-up marked (growth is
//! measured from there). Drawn like [`crate::chart`], by plotters' SVG backend alone.

use plotters::prelude::*;

use crate::chart::{Area, COLORS, DrawResult, axes, svg_document};
use crate::soak::SoakResult;

const SIZE: (u32, u32) = (900, 760);

/// One line: a process's values against seconds into the load.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// The chart as an SVG document; `subtitle` goes under the title (how it was measured).
///
/// Errors: plotters could not draw (not expected for finite values).
pub fn render(result: &SoakResult, subtitle: &str) -> anyhow::Result<String> {
    let rss = lines(result, |p| p.rss_mb);
    let disk = lines(result, |p| Some(p.disk_mb));
    svg_document(SIZE, |root| draw(root, &rss, &disk, result, subtitle))
}

/// One line per process (in the samples' order) of `value`, leaving out unreadable samples.
fn lines(result: &SoakResult, value: fn(&crate::soak::ProcessSample) -> Option<f64>) -> Vec<Line> {
    let names: Vec<String> = result
        .samples
        .first()
        .map(|s| s.processes.iter().map(|p| p.name.clone()).collect())
        .unwrap_or_default();
    names
        .into_iter()
        .enumerate()
        .map(|(i, name)| Line {
            points: result
                .samples
                .iter()
                .filter_map(|s| s.processes.get(i).and_then(value).map(|v| (s.t_s, v)))
                .filter(|(t, v)| t.is_finite() && v.is_finite())
                .collect(),
            name,
        })
        .collect()
}

fn draw(
    root: &Area<'_>,
    rss: &[Line],
    disk: &[Line],
    result: &SoakResult,
    subtitle: &str,
) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root
        .titled("Memory and disk at steady load", ("sans-serif", 26))?
        .titled(subtitle, ("sans-serif", 16))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 30);
    let end = result.duration_s.max(1.0);
    panel(&top, rss, "VmRSS (MiB)", end, result.warmup_s)?;
    panel(&bottom, disk, "data directory (MiB)", end, result.warmup_s)?;
    Ok(())
}

/// One panel: every line against seconds, with a dashed line at the end of the warm-up.
fn panel(area: &Area<'_>, lines: &[Line], y_label: &str, end_s: f64, warmup_s: f64) -> DrawResult {
    let y_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|&(_, v)| v))
        .fold(0.0, f64::max);
    let y_top = (y_max * 1.15).max(1.0);
    let mut chart = axes(area, 0.0..end_s * 1.02, y_top, "seconds of load", y_label)?;
    if warmup_s > 0.0 && warmup_s < end_s {
        chart.draw_series(DashedLineSeries::new(
            vec![(warmup_s, 0.0), (warmup_s, y_top)],
            6,
            4,
            BLACK.mix(0.5).stroke_width(1),
        ))?;
    }
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(line.points.clone(), color.stroke_width(2)))?
            .label(line.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            line.points
                .iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::{ProcessSample, Sample};

    fn result() -> SoakResult {
        let sample = |t_s: f64, rss: f64, disk: f64| Sample {
            t_s,
            processes: vec![
                ProcessSample {
                    name: "coordinator".into(),
                    rss_mb: Some(rss),
                    disk_mb: disk,
                },
                ProcessSample {
                    name: "wallet".into(),
                    rss_mb: None,
                    disk_mb: disk / 2.0,
                },
            ],
        };
        SoakResult {
            clients: 32,
            abort_ratio: 0.1,
            duration_s: 120.0,
            warmup_s: 60.0,
            finished: 1_000,
            throughput: 8.3,
            samples: vec![
                sample(0.0, 50.0, 1.0),
                sample(60.0, 70.0, 20.0),
                sample(120.0, 77.0, 40.0),
            ],
            growth: Vec::new(),
            coordinator_disk_bytes_per_saga: None,
            coordinator_file_bytes_per_saga: None,
            restart_rss_mb: None,
            idle_rss_mb: None,
            participant_retention_s: None,
            ok: true,
        }
    }

    #[test]
    fn draws_every_process_and_skips_unreadable_samples() {
        let result = result();
        let rss = lines(&result, |p| p.rss_mb);
        assert_eq!(
            rss[0].points,
            vec![(0.0, 50.0), (60.0, 70.0), (120.0, 77.0)]
        );
        assert!(rss[1].points.is_empty(), "the wallet's RSS was never read");
        let svg = render(&result, "test").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("coordinator") && svg.contains("wallet"));
        assert!(svg.contains("VmRSS (MiB)") && svg.contains("data directory (MiB)"));
    }
}
