//! `throughput_p99.svg`: throughput (top) and p99 latency (bottom) against concurrency, one
//! line per charted suite, x on a log scale with ticks at the measured concurrencies.
//!
//! Drawn by plotters' SVG backend alone: text is written as SVG `<text>` elements, so no font
//! library is needed to build or render it.

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

const SIZE: (u32, u32) = (900, 760);
/// Where each series writes its values, relative to the point: series at the same
/// concurrency do not write over each other.
const VALUE_OFFSETS: [(i32, i32); 4] = [(6, -20), (6, 6), (-44, -20), (-44, 6)];
/// Line colours, in series order (also the soak chart's).
pub(crate) const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// One measured point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Closed-loop clients (the x axis).
    pub clients: usize,
    /// Median sagas per second.
    pub throughput: f64,
    /// Median p99 latency.
    pub p99_ms: f64,
}

/// One line in both panels.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its legend.
    pub label: String,
    /// Its points, by clients.
    pub points: Vec<Point>,
}

/// The chart as an SVG document; `subtitle` goes under the title (how it was measured).
pub fn render(series: &[Series], subtitle: &str) -> anyhow::Result<String> {
    svg_document(SIZE, |root| draw(root, series, subtitle))
}

/// What a drawing function returns (plotters' errors are of several types).
pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;
/// The whole SVG canvas a drawing function draws on.
pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// An SVG document of `size` pixels drawn by `draw` on a canvas of its own.
///
/// Errors: `draw` failed, or the document could not be finished.
pub(crate) fn svg_document(
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).map_err(|e| anyhow::anyhow!("drawing the chart: {e}"))?;
        root.present()
            .map_err(|e| anyhow::anyhow!("writing the chart: {e}"))?;
    }
    Ok(svg)
}

fn draw(root: &Area<'_>, series: &[Series], subtitle: &str) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root
        .titled(
            "Throughput and p99 latency against concurrency",
            ("sans-serif", 26),
        )?
        .titled(subtitle, ("sans-serif", 16))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 30);
    panel(&top, series, "sagas/s", |p| p.throughput)?;
    panel(&bottom, series, "p99 latency (ms)", |p| p.p99_ms)?;
    Ok(())
}

/// A panel's chart: x against a linear y, drawing on an [`Area`].
pub(crate) type Panel<'a, 'b, X> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, RangedCoordf64>>;

/// A panel's chart: `x` against 0..`y_top`, with the mesh, labels and fonts every chart of
/// the benchmark shares.
pub(crate) fn axes<'a, 'b, X>(
    area: &'a Area<'b>,
    x: X,
    y_top: f64,
    x_desc: &str,
    y_desc: &str,
) -> Result<Panel<'a, 'b, X::CoordDescType>, Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, 0.0..y_top)?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    Ok(chart)
}

/// One panel: `value` of every series against clients.
fn panel(
    area: &Area<'_>,
    series: &[Series],
    y_label: &str,
    value: fn(&Point) -> f64,
) -> DrawResult {
    let points = || series.iter().flat_map(|s| s.points.iter());
    // Ticks exactly at the measured concurrencies.
    let mut clients: Vec<f64> = points().map(|p| p.clients as f64).collect();
    clients.sort_by(f64::total_cmp);
    clients.dedup();
    let x_max = clients.last().copied().unwrap_or(256.0).max(2.0);
    let y_max = points().map(value).fold(0.0, f64::max);
    let x_range = (0.8..x_max * 1.25).log_scale().with_key_points(clients);
    let mut chart = axes(
        area,
        x_range,
        (y_max * 1.2).max(1.0),
        "concurrent clients (log scale)",
        y_label,
    )?;
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let xy: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.clients as f64, value(p)))
            .collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            xy.iter()
                .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
        )?;
        // The value next to each point, so the chart reads without the table.
        let offset = VALUE_OFFSETS[i % VALUE_OFFSETS.len()];
        chart.draw_series(xy.iter().map(|&(x, y)| {
            EmptyElement::at((x, y))
                + Text::new(
                    format!("{y:.0}"),
                    offset,
                    ("sans-serif", 15).into_font().color(&color),
                )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_svg_has_both_panels_the_ticks_and_the_legend_as_text() {
        let series = vec![
            Series {
                label: "all commit".into(),
                points: vec![
                    Point {
                        clients: 1,
                        throughput: 280.0,
                        p99_ms: 6.0,
                    },
                    Point {
                        clients: 16,
                        throughput: 872.0,
                        p99_ms: 30.5,
                    },
                    Point {
                        clients: 64,
                        throughput: 1180.0,
                        p99_ms: 87.0,
                    },
                    Point {
                        clients: 256,
                        throughput: 1210.0,
                        p99_ms: 310.0,
                    },
                ],
            },
            Series {
                label: "10 % abort".into(),
                points: vec![Point {
                    clients: 64,
                    throughput: 1100.0,
                    p99_ms: 90.0,
                }],
            },
        ];
        let svg = render(&series, "medians of 3 runs, 2 × Example CPU").unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        let has_text = |text: &str| svg.contains(&format!(">\n{text}\n</text>"));
        for text in [
            "Throughput and p99 latency against concurrency",
            "medians of 3 runs, 2 × Example CPU",
            "sagas/s",
            "p99 latency (ms)",
            "concurrent clients (log scale)",
            "256",
            "16",
            "all commit",
            "10 % abort",
            "1180",
        ] {
            assert!(has_text(text), "no text {text:?} in the SVG");
        }
        // Nothing measured: still a valid, empty chart.
        assert!(render(&[], "x").unwrap().contains("sagas/s"));
    }
}
