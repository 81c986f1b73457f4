//! The report as one standalone HTML page: no script, no external font or
//! stylesheet, charts as inline SVG. Laid out at a fixed width so a
//! headless browser's screenshot (`chromium --headless --screenshot
//! --window-size=1280,2200 report.html`) shows the whole of it.

use super::chart;
use super::grid::Grid;
use super::metrics::{Ratio, Report};
use super::text::{definitions, funnel_line, limits_grid, monitoring_grid, per, percent, plans_grid, summary};
use crate::render::escape;

pub fn html(r: &Report) -> String {
    let m = &r.all;
    let tile = |label: &str, value: String, detail: String| {
        format!(
            "<div class=\"tile\"><div class=\"label\">{}</div><div class=\"value\">{}</div><div class=\"detail\">{}</div></div>\n",
            escape(label),
            escape(&value),
            escape(&detail)
        )
    };
    let share = |r: Ratio| r.share().map_or_else(|| "–".to_string(), percent);
    let of = |r: Ratio, what: &str| format!("{} of {} {what}", r.n, r.of);
    let mut tiles = String::new();
    tiles.push_str(&tile("Callers", m.callers.to_string(), format!("{} requests", m.requests)));
    tiles.push_str(&tile("Soft-limit hit", share(m.soft), of(m.soft, "callers")));
    tiles.push_str(&tile("Hard-limit hit", share(m.hard), of(m.hard, "callers")));
    tiles.push_str(&tile("Abandoned within 60 s", share(m.abandoned), of(m.abandoned, "quota errors")));
    tiles.push_str(&tile("Converted after a prompt", share(m.converted), of(m.converted, "prompted callers")));
    tiles.push_str(&tile("Premium share", share(r.mix.premium), of(r.mix.premium, "sync requests")));
    tiles.push_str(&tile("Batch share", share(r.mix.batch), of(r.mix.batch, "records")));
    tiles.push_str(&tile("Failed or retried", share(m.failed_or_retried), of(m.failed_or_retried, "requests")));
    tiles.push_str(&tile(
        "Output / input tokens",
        per(m.tokens.output_per_input()),
        format!("{} requests with tokens", m.tokens.requests),
    ));
    tiles.push_str(&tile("Cached input", share(m.tokens.cached_share()), "of input tokens".to_string()));

    let mut body = String::new();
    body.push_str(&format!("<header>\n<h1>Quota experience report</h1>\n<p>{}</p>\n</header>\n", escape(&summary(r))));
    body.push_str(&format!("<section class=\"tiles\" aria-label=\"Headline numbers\">\n{tiles}</section>\n"));
    body.push_str("<section class=\"charts\">\n");
    body.push_str(&figure(
        &chart::hit_rates(&r.days),
        "Soft- and hard-limit hit rate per day (share of that day's callers).",
    ));
    body.push_str(&figure(&chart::funnel(&r.funnel), &funnel_line(r)));
    body.push_str(&figure(&chart::requests(&r.days), "Requests per day; refused on top."));
    body.push_str("</section>\n");
    body.push_str(&table(&limits_grid(r), "Limits: who meets them, and what they do next", 1));
    body.push_str(&table(&monitoring_grid(r), "Monitoring: failures, tokens, spend", 2));
    body.push_str(&table(&plans_grid(r), "Plans: every class together", 3));
    body.push_str("<section>\n<h2>Definitions</h2>\n<ul>\n");
    for d in definitions(r) {
        body.push_str(&format!("<li>{}</li>\n", escape(&d)));
    }
    body.push_str("</ul>\n</section>\n");
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Quota experience report: {}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        escape(&r.ledger)
    )
}

const STYLE: &str = "\
body{font:15px/1.45 system-ui,sans-serif;color:#1b1b1b;background:#fff;margin:0}
main{width:1200px;margin:0 auto;padding:24px 32px;box-sizing:border-box}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:18px;margin:24px 0 8px}
header p{margin:0;color:#444}
.tiles{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:20px 0}
.tile{border:1px solid #c7c7c7;border-radius:6px;padding:10px 12px}
.tile .label{font-size:13px;color:#444}
.tile .value{font-size:26px;font-weight:600}
.tile .detail{font-size:12px;color:#555}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
figure{margin:0;border:1px solid #c7c7c7;border-radius:6px;padding:12px}
figcaption{font-size:13px;color:#444;margin-top:6px}
svg{max-width:100%;height:auto}
.scroll{overflow-x:auto;margin:8px 0 0}
table{border-collapse:collapse;width:100%;font-size:13px}
caption{text-align:left;font-weight:600;font-size:16px;padding:16px 0 6px}
th,td{border:1px solid #b0b0b0;padding:4px 6px;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#e8eef7}
li{margin:2px 0}
@media print{main{width:auto}}
";

fn figure(svg: &str, caption: &str) -> String {
    format!("<figure>\n{svg}<figcaption>{}</figcaption>\n</figure>\n", escape(caption))
}

/// A grid as a table with column headers, numbers right-aligned.
fn table(g: &Grid, caption: &str, n: usize) -> String {
    let mut out = format!(
        "<div class=\"scroll\" role=\"region\" aria-labelledby=\"t{n}\" tabindex=\"0\">\n<table>\n\
         <caption id=\"t{n}\">{}</caption>\n<thead><tr>",
        escape(caption)
    );
    for c in &g.columns {
        out.push_str(&format!("<th scope=\"col\">{}</th>", escape(c)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &g.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            if g.numeric.get(i).copied().unwrap_or(false) {
                out.push_str(&format!("<td class=\"n\">{}</td>", escape(c)));
            } else {
                out.push_str(&format!("<td>{}</td>", escape(c)));
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n</div>\n");
    out
}
