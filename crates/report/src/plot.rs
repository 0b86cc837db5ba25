//! Line charts of a measure against concurrency, one line per rung, as SVG text
//! (plotters' SVG backend): colour by language, marker and dash by model, a log
//! y axis since the rungs differ by orders of magnitude, the range over the repeats
//! as an error bar at each point, and the legend in its own column so it never
//! hides a line.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ladder::{Language, Model, Rung};

const WIDTH: u32 = 900;
const HEIGHT: u32 = 480;
const LEGEND_WIDTH: u32 = 190;

/// One point: the median over the repeats and their range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub clients: usize,
    pub value: f64,
    pub low: f64,
    pub high: f64,
}

impl Point {
    /// A point without spread.
    pub fn at(clients: usize, value: f64) -> Point {
        Point {
            clients,
            value,
            low: value,
            high: value,
        }
    }
}

/// One line: a rung's points.
#[derive(Debug, Clone)]
pub struct Series {
    pub rung: Rung,
    pub points: Vec<Point>,
}

fn colour(rung: Rung) -> RGBColor {
    match rung.language {
        Some(Language::Rust) => RGBColor(206, 92, 0),
        Some(Language::C) => RGBColor(23, 150, 170),
        Some(Language::Sh) => RGBColor(110, 110, 110),
        Some(Language::Perl) => RGBColor(31, 119, 180),
        Some(Language::Python) => RGBColor(44, 160, 44),
        Some(Language::Php) => RGBColor(148, 103, 189),
        None => RGBColor(0, 0, 0),
    }
}

/// Runs `$draw` with `$m` bound to a function from a point to `$rung`'s marker
/// there (pixel or data coordinates alike). A macro rather than a function returning
/// a boxed element because plotters' dynamic elements must outlive the SVG string.
macro_rules! with_marker {
    ($rung:expr, |$m:ident| $draw:expr) => {{
        let c = colour($rung);
        let filled = ShapeStyle::from(&c).filled();
        let open = ShapeStyle::from(&c).stroke_width(2);
        match $rung.model {
            Model::Cgi => {
                let $m = |p| EmptyElement::at(p) + Circle::new((0, 0), 4, filled);
                $draw
            }
            Model::FastCgi => {
                let $m = |p| EmptyElement::at(p) + TriangleMarker::new((0, 0), 6, filled);
                $draw
            }
            Model::Gunicorn => {
                let $m = |p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], open);
                $draw
            }
            Model::Uvicorn => {
                let $m = |p| EmptyElement::at(p) + Cross::new((0, 0), 5, open);
                $draw
            }
            Model::Static => {
                let $m = |p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], filled);
                $draw
            }
            // The reference servers: open markers on dotted lines.
            Model::Lighttpd => {
                let $m = |p| EmptyElement::at(p) + Circle::new((0, 0), 5, open);
                $draw
            }
            Model::NginxFcgiwrap => {
                let $m = |p| EmptyElement::at(p) + Circle::new((0, 0), 3, open);
                $draw
            }
            Model::NginxFastCgi => {
                let $m = |p| EmptyElement::at(p) + TriangleMarker::new((0, 0), 6, open);
                $draw
            }
            Model::NginxStatic => {
                let $m = |p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], open);
                $draw
            }
        }
    }};
}

/// How a rung's line is drawn: solid (our server), dashed (the Python servers and
/// our static file), dotted (the reference servers).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Dash {
    Solid,
    Dashed,
    Dotted,
}

fn dash(model: Model) -> Dash {
    match model {
        Model::Cgi | Model::FastCgi => Dash::Solid,
        Model::Gunicorn | Model::Uvicorn | Model::Static => Dash::Dashed,
        _ => Dash::Dotted,
    }
}

/// 1.5k, 20, 0.35.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if a >= 1e3 {
        let k = v / 1e3;
        if k.fract().abs() < 0.05 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else if a >= 10.0 || v.fract().abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Round values for a log axis between `lo` and `hi`: 1, 2 and 5 × 10^k, or only the
/// powers of ten when that would crowd the axis.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo) {
        return Vec::new();
    }
    let mut dense = Vec::new();
    for k in lo.log10().floor() as i32..=hi.log10().ceil() as i32 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(k);
            if (lo..=hi).contains(&v) {
                dense.push(v);
            }
        }
    }
    let decades: Vec<f64> = dense
        .iter()
        .copied()
        .filter(|v| (v.log10() - v.log10().round()).abs() < 1e-9)
        .collect();
    if dense.len() > 7 && decades.len() >= 2 {
        decades
    } else {
        dense
    }
}

/// A chart of `series` against the concurrencies in `clients` (evenly spaced, so a
/// doubling ladder reads as a log axis).
pub fn chart(
    title: &str,
    y_desc: &str,
    clients: &[usize],
    series: &[Series],
) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, title, y_desc, clients, series).map_err(|e| format!("plot {title}: {e}"))?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    title: &str,
    y_desc: &str,
    clients: &[usize],
    series: &[Series],
) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.value, p.low, p.high]))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if values.is_empty() {
        (0.1, 10.0)
    } else {
        (lo / 1.6, hi * 1.6)
    };
    let index = |c: usize| clients.iter().position(|&x| x == c).map(|i| i as f64);
    let n = clients.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.3f64..(n - 0.7), (lo..hi).log_scale())
        .map_err(err)?;
    let labels = clients.to_vec();
    chart
        .configure_mesh()
        .x_labels(clients.len().max(2))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels
                    .get(i as usize)
                    .map_or(String::new(), |c| c.to_string())
            } else {
                String::new()
            }
        })
        // plotters' own log-axis labels repeat and crowd; ours are drawn below.
        .disable_y_mesh()
        .y_labels(0)
        .y_label_formatter(&|_| String::new())
        .x_desc("concurrent clients")
        .y_desc(y_desc)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE)
        .draw()
        .map_err(err)?;
    let (x0, x1) = (-0.3, n - 0.7);
    let label =
        TextStyle::from(("sans-serif", 14).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for v in log_ticks(lo, hi) {
        chart
            .draw_series(LineSeries::new(
                [(x0, v), (x1, v)],
                ShapeStyle::from(&RGBColor(225, 225, 225)),
            ))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(x0, v));
        plot.draw(&Text::new(compact(v), (px - 6, py), label.clone()))
            .map_err(err)?;
    }
    for s in series {
        let shown: Vec<(f64, &Point)> = s
            .points
            .iter()
            .filter(|p| p.value > 0.0 && p.value.is_finite())
            .filter_map(|p| Some((index(p.clients)?, p)))
            .collect();
        let pts: Vec<(f64, f64)> = shown.iter().map(|(x, p)| (*x, p.value)).collect();
        let style = ShapeStyle::from(&colour(s.rung)).stroke_width(2);
        // The range over the repeats: a bar with short caps, where there is one.
        let bar = ShapeStyle::from(&colour(s.rung)).stroke_width(2);
        for (x, p) in &shown {
            if !(p.low > 0.0 && p.high > p.low) {
                continue;
            }
            let (lo, hi) = (p.low, p.high);
            chart
                .draw_series(
                    [
                        vec![(*x, lo), (*x, hi)],
                        vec![(x - 0.04, lo), (x + 0.04, lo)],
                        vec![(x - 0.04, hi), (x + 0.04, hi)],
                    ]
                    .into_iter()
                    .map(|line| PathElement::new(line, bar)),
                )
                .map_err(err)?;
        }
        match dash(s.rung.model) {
            Dash::Solid => chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map(|_| ())
                .map_err(err)?,
            Dash::Dashed => chart
                .draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                .map(|_| ())
                .map_err(err)?,
            Dash::Dotted => chart
                .draw_series(DashedLineSeries::new(pts.clone(), 2, 4, style))
                .map(|_| ())
                .map_err(err)?,
        }
        with_marker!(s.rung, |m| chart
            .draw_series(pts.iter().map(|&p| m(p)))
            .map(|_| ())
            .map_err(err))?;
    }
    draw_legend(&legend, series).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn draw_legend(area: &DrawingArea<SVGBackend<'_>, Shift>, series: &[Series]) -> Result<(), String> {
    let top = 50;
    for (i, s) in series.iter().enumerate() {
        let y = top + 22 * i as i32;
        let style = ShapeStyle::from(&colour(s.rung)).stroke_width(2);
        let segments: &[(i32, i32)] = match dash(s.rung.model) {
            Dash::Solid => &[(4, 36)],
            Dash::Dashed => &[(4, 13), (17, 26), (30, 36)],
            Dash::Dotted => &[(4, 6), (10, 12), (16, 18), (22, 24), (28, 30), (34, 36)],
        };
        for &(x0, x1) in segments {
            area.draw(&PathElement::new(vec![(x0, y), (x1, y)], style))
                .map_err(err)?;
        }
        with_marker!(s.rung, |m| area.draw(&m((20, y))).map_err(err))?;
        area.draw(&Text::new(
            s.rung.label(),
            (44, y - 7),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_numbers() {
        assert_eq!(compact(1500.0), "1.5k");
        assert_eq!(compact(20000.0), "20k");
        assert_eq!(compact(20.0), "20");
        assert_eq!(compact(2.0), "2");
        assert_eq!(compact(2.5), "2.5");
        assert_eq!(compact(0.35), "0.35");
    }

    #[test]
    fn log_axis_ticks() {
        assert_eq!(log_ticks(0.8, 60.0), [1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
        assert_eq!(log_ticks(30.0, 90_000.0), [100.0, 1000.0, 10_000.0]);
        assert_eq!(log_ticks(3.0, 4.0), Vec::<f64>::new());
    }

    #[test]
    fn draws_an_svg_with_every_label() {
        let s = |model, l| Series {
            rung: Rung::new(model, l),
            points: vec![
                Point::at(1, 10.0),
                Point {
                    clients: 2,
                    value: 18.0,
                    low: 15.0,
                    high: 21.0,
                },
                Point::at(4, 19.0),
            ],
        };
        let svg = chart(
            "Throughput",
            "answers/s",
            &[1, 2, 4],
            &[
                s(Model::Cgi, Language::Python),
                s(Model::FastCgi, Language::Python),
                s(Model::Uvicorn, Language::Python),
            ],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for text in [
            "Throughput",
            "python CGI",
            "python uvicorn",
            "concurrent clients",
        ] {
            assert!(svg.contains(text), "no {text}");
        }
    }
}
