//! The Lambda-shaped section of docs/performance.md: one line per function (memory size chosen
//! from the curve, cold first response, warm p99, cost per million, ratio to Node), the goals,
//! then every figure per memory size.

use std::time::Duration;

use super::Figures;
use crate::stats::ms;

/// The latency budget the memory size is chosen within (an API a person waits on): the main path's
/// warm p99 and the cold start (init + first response, init throttled) must both fit.
pub const WARM_P99_BUDGET: Duration = Duration::from_millis(100);
pub const COLD_START_BUDGET: Duration = Duration::from_millis(250);
/// A larger size replaces a smaller one only when it is cheaper by more than this share: the
/// run-to-run noise of the cost figure, so that the choice does not flip between runs.
pub const CHEAPER_BY: f64 = 0.05;

/// Rust function → the Node handler that does the same job (posts-write has none).
const PAIRS: &[(&str, Option<&str>)] = &[
    ("posts-read", Some("node posts-read")),
    ("posts-write", None),
    ("auth-refresh", Some("node auth-refresh")),
    ("upload-presign", Some("node upload-presign")),
    ("stripe-webhook", Some("node stripe-webhook")),
    ("email-sender", Some("node email-send")),
];

/// Within the latency budget, and every answer a success (a size whose cold starts time out is
/// never chosen, however cheap).
fn within_budget(f: &Figures) -> bool {
    f.main_path().p99 <= WARM_P99_BUDGET
        && f.cold_start() <= COLD_START_BUDGET
        && f.cold_failures == 0
        && f.warm_failures == 0
}

/// The cheapest size within the budget (smallest first; a larger one only when cheaper by more
/// than [`CHEAPER_BY`]), else the same over every size (flagged `false`).
pub fn choose(rows: &[Figures]) -> (&Figures, bool) {
    match pick(rows.iter().filter(|f| within_budget(f)).collect()) {
        Some(f) => (f, true),
        None => (pick(rows.iter().collect()).expect("at least one size"), false),
    }
}

fn pick(mut candidates: Vec<&Figures>) -> Option<&Figures> {
    candidates.sort_by_key(|f| f.memory_mb);
    let mut best: Option<&Figures> = None;
    for f in candidates {
        if best.is_none_or(|b| f.duration_usd() < b.duration_usd() * (1.0 - CHEAPER_BY)) {
            best = Some(f);
        }
    }
    best
}

fn usd(v: f64) -> String {
    format!("${v:.4}")
}

fn find<'a>(measured: &'a [(String, Vec<Figures>)], name: &str) -> Option<&'a [Figures]> {
    measured.iter().find(|(n, _)| n == name).map(|(_, rows)| rows.as_slice())
}

fn at(rows: &[Figures], mb: u64) -> Option<&Figures> {
    rows.iter().find(|f| f.memory_mb == mb)
}

/// The Lambda-shaped mode's three pages: the summary (one line per function, in
/// docs/performance.md), the goals and decisions (docs/performance-as-billed.md), and every figure
/// (docs/performance-figures.md), each short enough to read in one sitting.
pub struct Pages {
    pub summary: String,
    pub decisions: String,
    pub figures: String,
}

pub const DECISIONS_PAGE: &str = "performance-as-billed.md";
pub const FIGURES_PAGE: &str = "performance-figures.md";

/// `written_by`: the line saying which command wrote the pages, and when.
pub fn markdown(measured: &[(String, Vec<Figures>)], secrets: &str, written_by: &str) -> Pages {
    let mut md = String::from(
        "## As Lambda bills it (Lambda-shaped mode)\n\n\
         Every endpoint over TLS with a CA the bench made (redis-server serving TLS only, trusted \
         through `REDIS_CA_BUNDLE`; a TLS front before moto, trusted through `AWS_CA_BUNDLE`; each \
         function's secrets read by ARN from Secrets Manager at init), and each process held to the \
         CPU share of its memory size by a cgroup (quota = memory / 1,769 MB of one CPU per 100 ms \
         period, the kernel's default: Lambda does not publish its period). Init is measured inside \
         the limit and without it (AWS does not document which applies). Billed duration rounds \
         each invocation up to the millisecond; a cold request bills init + first response. Cost: \
         arm64 at $0.0000133334 per GB-s and $0.20 per million requests (US East, first tier), \
         for each function's stated mix with 1 % of requests on a new execution environment. \
         The Node baseline (`../shared/anchors/node-seed`) runs under the same endpoints and \
         shares, one after the other in this run.\n\n",
    );
    md.push_str(&format!(
        "Memory size chosen: the cheapest per million within a latency budget of warm p99 ≤ {} and \
         cold start (init + first response, init throttled) ≤ {} on the main path, a larger size \
         only when it is more than {:.0} % cheaper (the noise between runs); Node's best size is \
         chosen by the same rule.\n\n\
         Cost per million is the billed duration of the mix; the request fee ($0.20 per million) is the \
         same for every function and runtime, so it is shown beside it but left out of the ratio.\n\n\
         | function | memory chosen | cold start (init + first response) | warm p99 | duration cost per million | \
         Node at its best size | Node / Rust |\n| --- | --- | --- | --- | --- | --- | --- |\n",
        ms(WARM_P99_BUDGET),
        ms(COLD_START_BUDGET),
        CHEAPER_BY * 100.0
    ));
    let mut ratios = Vec::new();
    for (rust, node) in PAIRS {
        let Some(rows) = find(measured, rust) else { continue };
        let (chosen, fits) = choose(rows);
        let node_best = node.and_then(|n| find(measured, n)).map(choose);
        let (node_cell, ratio_cell) = match node_best {
            Some((n, node_fits)) => {
                let ratio = n.duration_usd() / chosen.duration_usd();
                ratios.push((*rust, ratio, n.usd_per_million() / chosen.usd_per_million()));
                (
                    format!(
                        "{} ({} with the fee) at {} MB{}, cold start {}",
                        usd(n.duration_usd()),
                        usd(n.usd_per_million()),
                        n.memory_mb,
                        if node_fits { "" } else { " (none within budget)" },
                        ms(n.cold_start())
                    ),
                    format!(
                        "{ratio:.1}× cost, {:.1}× cold start",
                        n.cold_start().as_secs_f64() / chosen.cold_start().as_secs_f64()
                    ),
                )
            }
            None => ("no Node port".to_owned(), "—".to_owned()),
        };
        md.push_str(&format!(
            "| {rust} | {} MB{} | {} | {} | {} ({} with the fee) | {node_cell} | {ratio_cell} |\n",
            chosen.memory_mb,
            if fits { "" } else { " (none within budget: cheapest)" },
            ms(chosen.cold_start()),
            ms(chosen.main_path().p99),
            usd(chosen.duration_usd()),
            usd(chosen.usd_per_million()),
        ));
    }
    md.push('\n');
    md.push_str(&format!(
        "The goals, the decisions these figures made, and the cost of reading secrets and of tracing: \
         [performance as billed]({DECISIONS_PAGE}); every figure at every memory size: \
         [the figures]({FIGURES_PAGE}).\n\n"
    ));
    let mut decisions = format!("# Performance as Lambda bills it\n\n{written_by}\n\n");
    decisions.push_str(&goals(measured, &ratios));
    decisions.push_str(&placement(measured));
    decisions.push_str(secrets);
    decisions.push_str(include_str!("notes.md"));
    let mut figures = format!("# Every figure of the Lambda-shaped mode\n\n{written_by}\n\n");
    for (name, rows) in measured {
        figures.push_str(&detail(name, rows));
    }
    Pages { summary: md, decisions, figures }
}

/// The goals, checked on this run's figures.
fn goals(measured: &[(String, Vec<Figures>)], ratios: &[(&str, f64, f64)]) -> String {
    let mut md = String::from("### Goals\n\n");
    let (Some(read), Some(node), Some(floor)) =
        (find(measured, "posts-read"), find(measured, "node posts-read"), find(measured, "tls-floor"))
    else {
        return md;
    };
    let mb = choose(read).0.memory_mb;
    if let (Some(r), Some(n), Some(f)) = (at(read, mb), at(node, mb), at(floor, mb)) {
        let speedup = n.cold_start().as_secs_f64() / r.cold_start().as_secs_f64();
        let over_floor = r.cold_start().as_secs_f64() / f.cold_start().as_secs_f64();
        md.push_str(&format!(
            "- posts-read cold start at {mb} MB (init + first response, a cache miss: TLS to Redis and \
             DynamoDB): {} vs Node {} = **{speedup:.1}×** faster (goal ≥ 10×: {}); the floor (the runtime \
             opening the same two TLS connections, one round trip each) {}: posts-read is **{over_floor:.2}×** \
             it (goal ≤ 2×: {}).\n",
            ms(r.cold_start()),
            ms(n.cold_start()),
            if speedup >= 10.0 { "met" } else { "missed" },
            ms(f.cold_start()),
            if over_floor <= 2.0 { "met" } else { "missed" },
        ));
    }
    for (rust, ratio, with_fee) in ratios {
        md.push_str(&format!(
            "- {rust}: Node's duration cost per million at its best size is **{ratio:.1}×** Rust's at the chosen \
             size (goal ≥ 5×: {}); with the request fee, {with_fee:.2}×.\n",
            if *ratio >= 5.0 { "met" } else { "missed" }
        ));
    }
    md.push('\n');
    md
}

/// Where connections are opened: the floor with its connections at first use or during init.
fn placement(measured: &[(String, Vec<Figures>)]) -> String {
    let (Some(lazy), Some(eager)) = (find(measured, "tls-floor"), find(measured, "tls-floor-at-init")) else {
        return String::new();
    };
    let mut md = String::from(
        "### Where connections are opened\n\n\
         The floor opening posts-read's two TLS connections (Redis `PING`, DynamoDB `GetItem`) at first \
         use or during init. A cold request bills init + first response either way (`provided.al2023`), \
         so opening during init pays only if init runs faster than the invocation's share.\n\n\
         | memory | first use: init + first response (init throttled / not) | during init: init + first response (init throttled / not) |\n\
         | --- | --- | --- |\n",
    );
    for l in lazy {
        let Some(e) = at(eager, l.memory_mb) else { continue };
        md.push_str(&format!(
            "| {} MB | {} / {} | {} / {} |\n",
            l.memory_mb,
            ms(l.init_throttled + l.first_response),
            ms(l.init_unthrottled + l.first_after_unthrottled),
            ms(e.init_throttled + e.first_response),
            ms(e.init_unthrottled + e.first_after_unthrottled),
        ));
    }
    md.push('\n');
    md
}

fn detail(name: &str, rows: &[Figures]) -> String {
    let mut md = format!(
        "#### {name}\n\n| memory | init (throttled / not) | first response (after throttled / unthrottled init) | \
         billed cold request |"
    );
    let labels: Vec<&str> = rows.first().map(|f| f.paths.iter().map(|p| p.label).collect()).unwrap_or_default();
    for label in &labels {
        md.push_str(&format!(" {label}: p50 / p99 / mean billed |"));
    }
    md.push_str(
        " duration cost per million | throttled periods | failed answers (cold / warm) |\n| --- | --- | --- | --- |",
    );
    for _ in &labels {
        md.push_str(" --- |");
    }
    md.push_str(" --- | --- | --- |\n");
    for f in rows {
        md.push_str(&format!(
            "| {} MB | {} / {} | {} / {} | {:.0} ms |",
            f.memory_mb,
            ms(f.init_throttled),
            ms(f.init_unthrottled),
            ms(f.first_response),
            ms(f.first_after_unthrottled),
            f.cold_billed_ms
        ));
        for p in &f.paths {
            md.push_str(&format!(
                " {} / {} / {:.2} ms ({:.0} %) |",
                ms(p.p50),
                ms(p.p99),
                p.mean_billed_ms,
                p.share * 100.0
            ));
        }
        md.push_str(&format!(
            " {} | {} | {} / {} |\n",
            usd(f.duration_usd()),
            f.throttled_periods,
            f.cold_failures,
            f.warm_failures
        ));
    }
    md.push('\n');
    md
}
