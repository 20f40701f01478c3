//! Line charts as standalone SVG files, for the reports under docs/.
//!
//! SVG because the charts are committed beside the Markdown: a text file
//! diffs, renders on any forge and needs no plotting library (and its font
//! and image stack) in the build.

use std::fmt::Write;

/// One line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// One chart area; panels of a figure are stacked and share the x axis.
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// A shaded x range (a fault window, say), labelled at the top.
pub struct Band {
    pub from: f64,
    pub to: f64,
    pub label: String,
}

pub struct Figure {
    pub x_label: String,
    /// Logarithmic x axis (base 2), for series over 1, 4, 16… clients.
    pub x_log2: bool,
    pub panels: Vec<Panel>,
    pub bands: Vec<Band>,
}

const WIDTH: f64 = 860.0;
const PANEL_HEIGHT: f64 = 190.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const GAP: f64 = 34.0;
const BOTTOM: f64 = 46.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// Round tick values covering `lo..=hi`: steps of 1, 2 or 5 × 10ⁿ.
pub fn ticks(lo: f64, hi: f64, want: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / want.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (lo / step).ceil() * step;
    (0..)
        .map(|i| first + i as f64 * step)
        .take_while(|v| *v < hi + step * (1.0 - 1e-9))
        .collect()
}

fn label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Figure {
    fn x_of(&self, v: f64) -> f64 {
        if self.x_log2 { v.max(1e-9).log2() } else { v }
    }

    pub fn svg(&self) -> String {
        let xs = self
            .panels
            .iter()
            .flat_map(|p| &p.series)
            .flat_map(|s| s.points.iter().map(|p| self.x_of(p.0)));
        let (mut x_lo, mut x_hi) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        if x_lo > x_hi {
            (x_lo, x_hi) = (0.0, 1.0);
        }
        if x_hi == x_lo {
            x_hi = x_lo + 1.0;
        }
        let plot_w = WIDTH - LEFT - RIGHT;
        let height = TOP + self.panels.len() as f64 * (PANEL_HEIGHT + GAP) - GAP + BOTTOM;
        let sx = |x: f64| LEFT + (self.x_of(x) - x_lo) / (x_hi - x_lo) * plot_w;
        let mut out = String::new();
        let _ = write!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {WIDTH} {height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        );
        let x_ticks: Vec<f64> = if self.x_log2 {
            (x_lo.ceil() as i32..=x_hi.floor() as i32)
                .map(|e| 2f64.powi(e))
                .collect()
        } else {
            ticks(x_lo, x_hi, 10)
        };
        for (i, panel) in self.panels.iter().enumerate() {
            let top = TOP + i as f64 * (PANEL_HEIGHT + GAP);
            let bottom = top + PANEL_HEIGHT;
            // Neighbouring bands' labels take turns between two rows.
            let mut label_row = 0;
            let y_hi = panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .fold(0.0f64, f64::max);
            let y_ticks = ticks(0.0, if y_hi > 0.0 { y_hi * 1.05 } else { 1.0 }, 5);
            let y_top = y_ticks.last().copied().unwrap_or(1.0).max(y_hi).max(1e-9);
            let sy = |y: f64| bottom - y / y_top * PANEL_HEIGHT;
            for band in &self.bands {
                let (a, b) = (sx(band.from).max(LEFT), sx(band.to).min(LEFT + plot_w));
                if b > a {
                    let _ = writeln!(
                        out,
                        "<rect x=\"{a:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{PANEL_HEIGHT}\" \
                         fill=\"#f4c7c3\" fill-opacity=\"0.55\"/>",
                        b - a
                    );
                    if i == 0 {
                        let _ = writeln!(
                            out,
                            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" \
                             fill=\"#8a2a20\">{}</text>",
                            (a + b) / 2.0,
                            top - 4.0 - 11.0 * label_row as f64,
                            escape(&band.label)
                        );
                        label_row = 1 - label_row;
                    }
                }
            }
            for t in &y_ticks {
                let y = sy(*t);
                let _ = writeln!(
                    out,
                    "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                    LEFT + plot_w,
                    LEFT - 6.0,
                    y + 4.0,
                    label(*t)
                );
            }
            for t in &x_ticks {
                let x = sx(*t);
                let _ = writeln!(
                    out,
                    "<line x1=\"{x:.1}\" y1=\"{bottom:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>",
                    bottom + 4.0
                );
                if i + 1 == self.panels.len() {
                    let _ = writeln!(
                        out,
                        "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                        bottom + 17.0,
                        label(*t)
                    );
                }
            }
            let _ = writeln!(
                out,
                "<rect x=\"{LEFT}\" y=\"{top:.1}\" width=\"{plot_w:.1}\" height=\"{PANEL_HEIGHT}\" \
                 fill=\"none\" stroke=\"#333\"/>\
                 <text x=\"{LEFT}\" y=\"{:.1}\" font-weight=\"bold\">{}</text>",
                top - if self.bands.is_empty() || i > 0 {
                    6.0
                } else {
                    28.0
                },
                escape(&panel.title)
            );
            for (n, series) in panel.series.iter().enumerate() {
                let color = COLORS[n % COLORS.len()];
                let path: Vec<String> = series
                    .points
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite())
                    .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
                    .collect();
                let _ = writeln!(
                    out,
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" points=\"{}\"/>",
                    path.join(" ")
                );
                if series.points.len() <= 12 {
                    for p in &series.points {
                        let _ = writeln!(
                            out,
                            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                            sx(p.0),
                            sy(p.1)
                        );
                    }
                }
                let ly = top + 14.0 + n as f64 * 16.0;
                let lx = LEFT + plot_w + 12.0;
                let _ = writeln!(
                    out,
                    "<line x1=\"{lx:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" \
                     stroke-width=\"3\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
                    ly - 4.0,
                    lx + 16.0,
                    ly - 4.0,
                    lx + 20.0,
                    escape(&series.name)
                );
            }
        }
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n</svg>",
            LEFT + plot_w / 2.0,
            height - 8.0,
            escape(&self.x_label)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = ticks(0.0, 600.0, 10);
        assert_eq!(t.first(), Some(&0.0));
        assert_eq!(t.last(), Some(&600.0));
        assert!(t.windows(2).all(|w| w[1] - w[0] == 100.0), "{t:?}");
        assert_eq!(ticks(3.0, 3.0, 5), vec![3.0]);
    }

    #[test]
    fn a_figure_draws_each_series_band_and_escaped_label() {
        let fig = Figure {
            x_label: "seconds".into(),
            x_log2: false,
            panels: vec![
                Panel {
                    title: "requests/s".into(),
                    series: vec![
                        Series {
                            name: "ok".into(),
                            points: vec![(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)],
                        },
                        Series {
                            name: "5xx <all>".into(),
                            points: vec![(0.0, 0.0), (2.0, 1.0)],
                        },
                    ],
                },
                Panel {
                    title: "memory".into(),
                    series: vec![Series {
                        name: "RSS".into(),
                        points: vec![(0.0, 10.0), (2.0, 12.0)],
                    }],
                },
            ],
            bands: vec![Band {
                from: 0.5,
                to: 1.5,
                label: "Keycloak down".into(),
            }],
        };
        let svg = fig.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("5xx &lt;all&gt;"), "labels are escaped");
        assert!(!svg.contains("<all>"));
        assert_eq!(
            svg.matches("Keycloak down").count(),
            1,
            "band labelled once"
        );
        assert_eq!(
            svg.matches("fill=\"#f4c7c3\"").count(),
            2,
            "band shaded in both panels"
        );
    }

    #[test]
    fn a_log_axis_ticks_powers_of_two() {
        let fig = Figure {
            x_label: "clients".into(),
            x_log2: true,
            panels: vec![Panel {
                title: "req/s".into(),
                series: vec![Series {
                    name: "a".into(),
                    points: vec![(1.0, 5.0), (4.0, 9.0), (1024.0, 7.0)],
                }],
            }],
            bands: vec![],
        };
        let svg = fig.svg();
        for t in ["1", "2", "16", "128", "1024"] {
            assert!(svg.contains(&format!(">{t}</text>")), "tick {t}");
        }
    }
}
