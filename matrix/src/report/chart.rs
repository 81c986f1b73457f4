//! Inline SVG charts for the HTML report: drawn here, no script, no font
//! files, each an image with a title and a description for screen readers
//! (the numbers are also in the page's tables).

use super::metrics::{Day, Funnel};
use super::text::percent;
use crate::render::escape;

const WIDTH: f64 = 560.0;
const SOFT: &str = "#a15c00";
const HARD: &str = "#b3261e";
const INK: &str = "#1b1b1b";
const GRID: &str = "#d9d9d9";
const FILL: &str = "#0b57d0";
const UPGRADE: &str = "#1e7d32";
const ABANDON: &str = "#5f6368";

/// Coordinates with one decimal: the same page for the same numbers.
fn n(x: f64) -> String {
    format!("{x:.1}")
}

fn open(id: &str, height: f64, title: &str, desc: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-labelledby=\"{id}-t {id}-d\" font-family=\"system-ui, sans-serif\" font-size=\"12\">\n\
         <title id=\"{id}-t\">{}</title>\n<desc id=\"{id}-d\">{}</desc>\n",
        escape(title),
        escape(desc),
        w = n(WIDTH),
        h = n(height),
    )
}

/// The share of active callers who hit a soft and a hard limit, per day.
pub fn hit_rates(days: &[Day]) -> String {
    let height = 240.0;
    let (left, right, top, bottom) = (44.0, 12.0, 28.0, 30.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let share = |k: u64, of: u64| if of == 0 { 0.0 } else { k as f64 / of as f64 };
    let highest = days.iter().map(|d| share(d.soft.max(d.hard), d.callers)).fold(0.0, f64::max);
    // Ticks every 5, 10 or 20 points; the axis up to the tick at or above the highest day.
    let step = match highest {
        h if h <= 0.2 => 0.05,
        h if h <= 0.5 => 0.1,
        _ => 0.2,
    };
    let ticks = ((highest / step).ceil() as u32).clamp(1, 5);
    let top_share = step * f64::from(ticks);
    let x = |i: usize| {
        let span = days.len().saturating_sub(1).max(1) as f64;
        left + plot_w * i as f64 / span
    };
    let y = |s: f64| top + plot_h * (1.0 - s / top_share);
    let last = days.last();
    let desc = match last {
        Some(_) => {
            let worst = days
                .iter()
                .max_by(|a, b| share(a.hard, a.callers).total_cmp(&share(b.hard, b.callers)))
                .map(|d| format!("; the most blocked: {} ({} of {} callers)", d.date, d.hard, d.callers))
                .unwrap_or_default();
            format!(
                "{} days from {} to {}{worst}",
                days.len(),
                days.first().map_or("", |d| &d.date),
                last.map_or("", |d| &d.date)
            )
        }
        None => "no days".into(),
    };
    let mut out = open("hits", height, "Soft- and hard-limit hits per day, as a share of that day's callers", &desc);
    for q in 0..=ticks {
        let s = step * f64::from(q);
        out.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{GRID}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{INK}\">{:.0}%</text>\n",
            n(left),
            n(WIDTH - right),
            n(y(s)),
            n(y(s)),
            n(left - 6.0),
            n(y(s) + 4.0),
            s * 100.0
        ));
    }
    let step = days.len().div_ceil(8).max(1);
    for (i, d) in days.iter().enumerate().filter(|(i, _)| i % step == 0) {
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\n",
            n(x(i)),
            n(height - 10.0),
            d.date.get(5..).unwrap_or(&d.date)
        ));
    }
    for (color, pick, label, lx) in [
        (SOFT, (|d: &Day| d.soft) as fn(&Day) -> u64, "soft-limit hit", left),
        (HARD, |d: &Day| d.hard, "hard-limit hit", left + 130.0),
    ] {
        let points: Vec<String> =
            days.iter().enumerate().map(|(i, d)| format!("{},{}", n(x(i)), n(y(share(pick(d), d.callers))))).collect();
        out.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\" points=\"{}\"/>\n",
            points.join(" ")
        ));
        for (i, d) in days.iter().enumerate() {
            out.push_str(&format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{color}\"/>\n",
                n(x(i)),
                n(y(share(pick(d), d.callers)))
            ));
        }
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"8\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"14\" fill=\"{INK}\">{label}</text>\n",
            n(lx),
            n(lx + 20.0)
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// Requests per day: let through, and refused on top.
pub fn requests(days: &[Day]) -> String {
    let height = 200.0;
    let (left, right, top, bottom) = (44.0, 12.0, 28.0, 30.0);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let most = days.iter().map(|d| d.requests).max().unwrap_or(0).max(1);
    let scale = |k: u64| plot_h * k as f64 / most as f64;
    let slot = plot_w / days.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let total: u64 = days.iter().map(|d| d.requests).sum();
    let refused: u64 = days.iter().map(|d| d.refused).sum();
    let desc = format!("{total} requests over {} days, {refused} refused by the filter", days.len());
    let mut out = open("requests", height, "Requests per day, and how many the filter refused", &desc);
    for q in [0u64, 1, 2] {
        let k = most * q / 2;
        let yy = top + plot_h - scale(k);
        out.push_str(&format!(
            "<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{GRID}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{INK}\">{k}</text>\n",
            n(left),
            n(WIDTH - right),
            n(yy),
            n(yy),
            n(left - 6.0),
            n(yy + 4.0)
        ));
    }
    let step = days.len().div_ceil(8).max(1);
    for (i, d) in days.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let through = d.requests.saturating_sub(d.refused);
        let base = top + plot_h;
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{FILL}\"/>",
            n(x),
            n(base - scale(through)),
            n(bar),
            n(scale(through))
        ));
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{HARD}\"/>\n",
            n(x),
            n(base - scale(d.requests)),
            n(bar),
            n(scale(d.refused))
        ));
        if i % step == 0 {
            out.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{INK}\">{}</text>\n",
                n(x + bar / 2.0),
                n(height - 10.0),
                d.date.get(5..).unwrap_or(&d.date)
            ));
        }
    }
    for (color, label, lx) in [(FILL, "let through", left), (HARD, "refused", left + 110.0)] {
        out.push_str(&format!(
            "<rect x=\"{}\" y=\"6\" width=\"10\" height=\"10\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"15\" fill=\"{INK}\">{label}</text>\n",
            n(lx),
            n(lx + 16.0)
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// Callers from a warning to a block, then to an upgrade or away.
pub fn funnel(f: &Funnel) -> String {
    let stages: [(&str, u64, &str); 5] = [
        ("Active callers", f.callers, FILL),
        ("Warned (soft limit)", f.warned, SOFT),
        ("Blocked (hard limit)", f.blocked, HARD),
        ("Upgraded after a prompt", f.upgraded, UPGRADE),
        ("Left after a quota error", f.abandoned, ABANDON),
    ];
    let row = 38.0;
    let height = 16.0 + row * stages.len() as f64;
    let label_w = 190.0;
    let plot_w = WIDTH - label_w - 130.0;
    let desc = stages.iter().map(|(l, k, _)| format!("{l}: {k}")).collect::<Vec<_>>().join("; ");
    let mut out = open("funnel", height, "From a warning to a block, then to an upgrade or away", &desc);
    for (i, (label, k, color)) in stages.iter().enumerate() {
        let y = 8.0 + row * i as f64;
        let share = if f.callers == 0 { 0.0 } else { *k as f64 / f.callers as f64 };
        let w = (plot_w * share).max(if *k > 0 { 2.0 } else { 0.0 });
        out.push_str(&format!(
            "<text x=\"0\" y=\"{}\" fill=\"{INK}\">{label}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"24\" rx=\"3\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{INK}\">{k} ({})</text>\n",
            n(y + 16.0),
            n(label_w),
            n(y),
            n(w),
            n(label_w + w + 8.0),
            n(y + 16.0),
            percent(share)
        ));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str, callers: u64, soft: u64, hard: u64) -> Day {
        Day { date: date.into(), requests: callers * 3, refused: hard, callers, soft, hard }
    }

    #[test]
    fn charts_are_images_with_a_title_and_no_script() {
        let days = [day("2026-11-02", 10, 4, 1), day("2026-11-03", 8, 2, 2)];
        for svg in [hit_rates(&days), requests(&days), funnel(&Funnel { callers: 10, warned: 4, ..Funnel::default() })]
        {
            assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
            assert!(svg.contains("role=\"img\"") && svg.contains("<title id="));
            assert!(!svg.contains("<script") && !svg.contains("NaN") && !svg.contains("=\"inf"));
        }
        // 40% on the first day is the highest point: the axis goes to 40%, in steps of 10.
        let svg = hit_rates(&days);
        assert!(svg.contains(">40%</text>") && svg.contains(">10%</text>") && !svg.contains(">50%</text>"), "{svg}");
    }

    #[test]
    fn empty_inputs_draw_without_dividing_by_zero() {
        for svg in [hit_rates(&[]), requests(&[]), funnel(&Funnel::default()), hit_rates(&[day("2026-11-02", 0, 0, 0)])]
        {
            assert!(!svg.contains("NaN") && !svg.contains("=\"inf"), "{svg}");
        }
    }
}
