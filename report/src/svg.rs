//! Charts as standalone SVG, written by hand: two chart kinds do not need a
//! plotting library, and plain SVG text needs no font files on the machine
//! that renders it (GitHub shows it as an image, browsers open it).

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Ten colours that stay distinguishable (Tableau 10).
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A step of 1, 2 or 5 × 10^k at least `x`.
fn nice_step(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return 1.0;
    }
    let e = 10f64.powf(x.log10().floor());
    let f = x / e;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * e
}

/// Axis ticks from 0 to at least `max`, about five of them.
fn ticks(max: f64) -> Vec<f64> {
    let step = nice_step(max / 5.0);
    let n = (max / step).ceil().max(1.0) as usize;
    (0..=n).map(|i| i as f64 * step).collect()
}

/// `250ms`, `1.5s`, `2m`: short tick labels.
pub fn tick_label(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v == 0.0 {
        "0".into()
    } else if v < 1.0 {
        format!("{}ms", trim(format!("{:.1}", v * 1000.0)))
    } else if v < 120.0 {
        format!("{}s", trim(format!("{v:.2}")))
    } else {
        format!("{}m", trim(format!("{:.1}", v / 60.0)))
    }
}

fn header(out: &mut String, w: u32, h: u32, title: &str) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">
<rect width="{w}" height="{h}" fill="#ffffff"/>
<text x="{}" y="22" font-size="15" text-anchor="middle" font-weight="bold">{}</text>
"##,
        w / 2,
        escape(title)
    );
}

/// One line of a percentile chart.
pub struct Line<'a> {
    pub label: String,
    pub hist: &'a Histogram<u64>,
    /// Baselines are drawn dashed.
    pub dashed: bool,
    pub color: &'static str,
}

/// The HdrHistogram percentile distribution: x is the percentile on a
/// log scale of 1/(1-p) (0 %, 90 %, 99 %, 99.9 %...), y the duration.
pub fn percentile_chart(title: &str, lines: &[Line<'_>]) -> String {
    let (w, h) = (760u32, 400u32);
    let (left, right, top, bottom) = (70.0, 220.0, 40.0, 50.0);
    let pw = w as f64 - left - right;
    let ph = h as f64 - top - bottom;
    let most = lines.iter().map(|l| l.hist.len()).max().unwrap_or(1).max(1);
    // Beyond 1 - 1/n the curve is flat at the maximum: stop one decade later.
    let decades = ((most as f64).log10().ceil() + 1.0).clamp(2.0, 5.0);
    let max_v = lines
        .iter()
        .map(|l| l.hist.max() as f64 / 1e6)
        .fold(0.0, f64::max);
    let yt = ticks(max_v);
    let ymax = *yt.last().expect("at least two ticks");
    let x = |d: f64| left + d / decades * pw;
    let y = |v: f64| top + ph - v / ymax * ph;
    let mut out = String::new();
    header(&mut out, w, h, title);
    for t in &yt {
        let _ = writeln!(
            out,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#dddddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + pw,
            y(*t),
            y(*t),
            left - 6.0,
            y(*t) + 4.0,
            tick_label(*t)
        );
    }
    for d in 0..=decades as usize {
        let label = match d {
            0 => "0%".to_string(),
            d => format!("{}%", 100.0 - 100.0 / 10f64.powi(d as i32)),
        };
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#dddddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(d as f64),
            top + ph,
            top + ph + 16.0,
            label
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">duration</text>"##,
        left + pw / 2.0,
        h as f64 - 8.0,
        top + ph / 2.0,
        top + ph / 2.0
    );
    const STEPS: usize = 200;
    for (i, l) in lines.iter().enumerate() {
        if l.hist.is_empty() {
            continue;
        }
        let mut points = String::new();
        for k in 0..=STEPS {
            let d = decades * k as f64 / STEPS as f64;
            let q = (1.0 - 10f64.powf(-d)).clamp(0.0, 1.0);
            let v = l.hist.value_at_quantile(q) as f64 / 1e6;
            let _ = write!(points, "{:.1},{:.1} ", x(d), y(v));
        }
        let dash = if l.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"/>"#,
            l.color,
            points.trim_end()
        );
        let ly = top + 8.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{0:.1}" x2="{1:.1}" y1="{2:.1}" y2="{2:.1}" stroke="{3}" stroke-width="2"{dash}/><text x="{4:.1}" y="{5:.1}">{6}</text>"#,
            left + pw + 12.0,
            left + pw + 32.0,
            ly,
            l.color,
            left + pw + 38.0,
            ly + 4.0,
            escape(&format!("{} (n={})", l.label, l.hist.len()))
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One bar of a stacked bar chart: values per segment, in the legend's order.
pub struct Bar {
    pub label: String,
    pub segments: Vec<f64>,
}

/// Horizontal stacked bars, one per service, with a legend for the segments.
pub fn stacked_bars(title: &str, legend: &[&str], bars: &[Bar]) -> String {
    let label_w = bars
        .iter()
        .map(|b| b.label.chars().count())
        .max()
        .unwrap_or(4) as f64
        * 7.0
        + 16.0;
    let (left, right, top, bottom) = (label_w.max(80.0), 30.0, 60.0, 44.0);
    let w = 760u32.max((left + 400.0) as u32);
    let h = (top + bottom + bars.len().max(1) as f64 * 24.0) as u32;
    let pw = w as f64 - left - right;
    let total = |b: &Bar| b.segments.iter().sum::<f64>();
    let xt = ticks(bars.iter().map(total).fold(0.0, f64::max));
    let xmax = *xt.last().expect("at least two ticks");
    let x = |v: f64| left + v / xmax * pw;
    let mut out = String::new();
    header(&mut out, w, h, title);
    let mut lx = left;
    for (i, name) in legend.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<rect x="{lx:.1}" y="32" width="12" height="12" fill="{}"/><text x="{:.1}" y="42">{}</text>"#,
            color(i),
            lx + 16.0,
            escape(name)
        );
        lx += 16.0 + name.chars().count() as f64 * 7.0 + 18.0;
    }
    let axis_y = top + bars.len().max(1) as f64 * 24.0;
    for t in &xt {
        let _ = writeln!(
            out,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{top}" y2="{1:.1}" stroke="#dddddd"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(*t),
            axis_y,
            axis_y + 16.0,
            tick_label(*t)
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let by = top + i as f64 * 24.0 + 4.0;
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            by + 12.0,
            escape(&b.label)
        );
        let mut at = 0.0;
        for (j, v) in b.segments.iter().enumerate() {
            if *v > 0.0 {
                let _ = writeln!(
                    out,
                    r#"<rect x="{:.1}" y="{by:.1}" width="{:.2}" height="16" fill="{}"><title>{}</title></rect>"#,
                    x(at),
                    x(at + v) - x(at),
                    color(j),
                    escape(&format!(
                        "{} {}: {}",
                        b.label,
                        legend.get(j).copied().unwrap_or("?"),
                        tick_label(*v)
                    ))
                );
            }
            at += v;
        }
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds (p50 of each phase)</text>"#,
        left + pw / 2.0,
        h as f64 - 6.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(
            ticks(0.9),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(61.0);
        assert_eq!(t.last(), Some(&80.0));
        assert_eq!(tick_label(0.25), "250ms");
        assert_eq!(tick_label(1.5), "1.5s");
        assert_eq!(tick_label(300.0), "5m");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = stacked_bars(
            "a <b> & c",
            &["stop"],
            &[Bar {
                label: "x\"y".into(),
                segments: vec![1.0],
            }],
        );
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert!(svg.contains("x&quot;y"));
    }
}
