//! The batch-size study as a hand-written SVG line chart: ns per page
//! (log scale) against pages per gup-fast call (log scale), one line per
//! arch, and the flat walk + refcount limit of each arch dashed.

use std::fmt::Write as _;

use super::BatchPoint;

const W: f64 = 720.0;
const H: f64 = 440.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart for `points` (any number of arches, in the order given).
#[must_use]
pub fn batch_chart(points: &[BatchPoint]) -> String {
    let mut arches: Vec<&str> = Vec::new();
    for p in points {
        if !arches.contains(&p.arch.as_str()) {
            arches.push(&p.arch);
        }
    }
    let xs: Vec<f64> = points.iter().map(|p| p.pages_per_call as f64).collect();
    let ys: Vec<f64> = points
        .iter()
        .flat_map(|p| [p.ns_per_page, p.flat_ns_per_page])
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let x_max = xs
        .iter()
        .copied()
        .fold(1.0, f64::max)
        .log2()
        .ceil()
        .max(1.0);
    let y_lo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let y_hi = ys.iter().copied().fold(0.0, f64::max);
    let (y_lo, y_hi) = if y_lo.is_finite() && y_hi > 0.0 {
        (
            y_lo.log10().floor(),
            y_hi.log10().ceil().max(y_lo.log10().floor() + 1.0),
        )
    } else {
        (0.0, 3.0)
    };
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + pw * (x.max(1.0).log2() / x_max);
    let py = |y: f64| TOP + ph * (1.0 - (y.max(1e-3).log10() - y_lo) / (y_hi - y_lo));

    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="24" text-anchor="middle" font-size="15">gup-fast: cost per page vs pages per call</text>"##,
        LEFT + pw / 2.0
    );
    // Grid and y ticks (decades, with 2 and 5).
    let mut d = y_lo;
    while d <= y_hi {
        for m in [1.0, 2.0, 5.0] {
            let v = 10f64.powf(d) * m;
            if v.log10() > y_hi + 1e-9 {
                continue;
            }
            let y = py(v);
            let major = m == 1.0;
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="1"/>"##,
                LEFT + pw,
                if major { "#bbbbbb" } else { "#eeeeee" }
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT - 6.0,
                y + 4.0,
                if v >= 1.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v}")
                }
            );
        }
        d += 1.0;
    }
    // x ticks at the measured batch sizes.
    let mut ticks: Vec<(f64, String)> = Vec::new();
    for p in points {
        let x = p.pages_per_call as f64;
        if !ticks.iter().any(|(t, _)| (*t - x).abs() < 0.5) {
            let label = if p.all {
                format!("all ({})", p.pages_per_call)
            } else {
                p.pages_per_call.to_string()
            };
            ticks.push((x, label));
        }
    }
    for (x, label) in &ticks {
        let xx = px(*x);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eeeeee"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph + 18.0,
            esc(label)
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"##
    );
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">pages per call (log scale)</text>"##,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r##"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">ns per page (log scale)</text>"##,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    // One line per arch, and its flat limit dashed.
    for (k, arch) in arches.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        // Earlier lines wider, so lines that coincide stay visible.
        let width = 2.0 + 1.5 * (arches.len() - 1 - k) as f64;
        let pts: Vec<&BatchPoint> = points.iter().filter(|p| p.arch == *arch).collect();
        for (dash, value) in [
            (
                "",
                (|p: &BatchPoint| p.ns_per_page) as fn(&BatchPoint) -> f64,
            ),
            (r##" stroke-dasharray="5,4" stroke-opacity="0.6""##, |p| {
                p.flat_ns_per_page
            }),
        ] {
            let path: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.pages_per_call as f64), py(value(p))))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{c}" stroke-width="{width}"{dash}/>"##,
                path.join(" ")
            );
            if dash.is_empty() {
                for p in &pts {
                    let _ = writeln!(
                        s,
                        r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{c}"><title>{} {} pages/call: {:.2} ns/page</title></circle>"##,
                        px(p.pages_per_call as f64),
                        py(p.ns_per_page),
                        esc(arch),
                        p.pages_per_call,
                        p.ns_per_page
                    );
                }
            }
        }
        let ly = TOP + 10.0 + 36.0 * k as f64;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{c}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{} gup-fast</text>"##,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(arch)
        );
        let ly2 = ly + 16.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly2}" x2="{:.1}" y2="{ly2}" stroke="{c}" stroke-width="2" stroke-dasharray="5,4" stroke-opacity="0.6"/><text x="{:.1}" y="{:.1}">{} flat limit</text>"##,
            lx + 24.0,
            lx + 30.0,
            ly2 + 4.0,
            esc(arch)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_line_per_arch_and_is_well_formed() {
        let mut pts = Vec::new();
        for arch in ["x86_64", "arm64"] {
            for (n, ns) in [(1, 40.0), (16, 12.0), (512, 8.0), (16384, 7.5)] {
                pts.push(BatchPoint {
                    kind: "batch",
                    arch: arch.into(),
                    pages_per_call: n,
                    all: n == 16384,
                    ns_per_page: ns,
                    flat_ns_per_page: ns / 3.0,
                    ratio_to_flat: 3.0,
                    max_pte_run: n,
                    ns_per_call: ns * n as f64,
                });
            }
        }
        let svg = batch_chart(&pts);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("all (16384)"));
        assert_eq!(svg.matches('<').count(), svg.matches('>').count());
    }
}
