//! The benchmark report: one markdown table (with the machine) and an SVG chart of rounds/min
//! and overhead against fleet size.

use std::fmt::Write as _;

use crate::fleet::Row;

/// The machine the figures come from.
pub fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!(
        "nproc {nproc}, memory {mem_gib:.1} GiB, load average {:.2} at the end",
        crate::fleet::load_avg()
    )
}

fn ms(p: (f64, f64)) -> String {
    format!("{:.1} / {:.1}", p.0, p.1)
}

/// The markdown table of `rows`, `failover` lines and the other implementation's figures;
/// `zk_note` says how ZooKeeper was configured (fsync).
pub fn markdown(rows: &[Row], failover: &[String], zk_note: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# sensor fleet benchmark\n");
    let _ = writeln!(
        out,
        "Machine: {}. Standalone ZooKeeper 3.8 on 127.0.0.1 (tickTime {} ms, {zk_note}), period 1 s, session timeout 10 s, release build. Overheads are measured from the round's close deadline (its opening + the period): read = leader reads `/mediciones`, commit = commit acknowledged, delivered = the API has it (the benchmark's in-process receiver, not sensor-api). Where the time goes: commit txn = the commit transaction alone, POST = the delivery request, ack = recording the delivery in ZooKeeper afterwards (off the delivered path). Cadence restarts: rounds that ran so late that the next one opened off the 1 s grid. Times p50 / p99. CPU in % of one core.\n",
        machine(),
        testkit::TICK_MS
    );
    let _ = writeln!(out, "| build | fleet | sensors | rounds/min | readings/live (mean, worst round) | read ms | commit txn ms | commit ms | delivered ms | POST ms | ack ms | cadence restarts | ZooKeeper txns/round | /counter per round | CPU per sensor % | ZooKeeper CPU % | RSS per sensor MiB | load |");
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} | {:.2} % / {:.2} % | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.1} | {:.2} | {:.1} |",
            r.build,
            r.mode.label(),
            r.n,
            r.rounds_per_min,
            r.mean_fill * 100.0,
            r.min_fill * 100.0,
            ms(r.read_ms),
            ms(r.commit_txn_ms),
            ms(r.commit_ms),
            ms(r.delivered_ms),
            ms(r.post_ms),
            ms(r.ack_ms),
            r.cadence_restarts,
            r.zk_txns_per_round,
            r.counter_per_round,
            r.cpu_per_sensor_pct,
            r.zk_cpu_pct,
            r.rss_per_sensor_mib,
            r.load
        );
    }
    if !failover.is_empty() {
        let _ = writeln!(out, "\nFailover:\n");
        for f in failover {
            let _ = writeln!(out, "- {f}");
        }
    }
    let _ = writeln!(
        out,
        "\nFor comparison only — **another implementation's figures** (the kazoo-based peer, its own machine), for the phases measured the same way: 57.0 rounds/min at 3 sensors and 55.0 at 20 (period 1 s); failover after leader SIGKILL 10.5–12.4 s with a 10 s session; 30.9 MB per sensor; 737 req/s ingest (an API figure, see bench/api)."
    );
    out
}

/// An SVG with two panels against fleet size (log scale): rounds/min, and p99 delivered
/// overhead (ms), one polyline per (build, fleet mode).
pub fn svg(rows: &[Row]) -> String {
    let (w, h, pad) = (900.0, 360.0, 50.0);
    let panel_w = (w - 3.0 * pad) / 2.0;
    let panel_h = h - 2.0 * pad;
    let ns: Vec<f64> = rows.iter().map(|r| r.n as f64).collect();
    let (nmin, nmax) = ns
        .iter()
        .fold((f64::INFINITY, 0.0_f64), |(a, b), n| (a.min(*n), b.max(*n)));
    let (lmin, lmax) = (nmin.max(1.0).log10(), nmax.max(2.0).log10());
    let x = |n: f64, x0: f64| {
        x0 + if lmax > lmin {
            (n.max(1.0).log10() - lmin) / (lmax - lmin) * panel_w
        } else {
            panel_w / 2.0
        }
    };
    let max_over = rows
        .iter()
        .map(|r| r.delivered_ms.1)
        .filter(|v| v.is_finite())
        .fold(10.0_f64, f64::max);
    let mut series: Vec<(String, Vec<&Row>)> = Vec::new();
    for r in rows {
        let key = format!("{} {}", r.build, r.mode.label());
        match series.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(r),
            None => series.push((key, vec![r])),
        }
    }
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    for (i, title, ymax) in [
        (0, "rounds/min (period 1 s)", 65.0),
        (1, "p99 close → delivered (ms)", max_over * 1.1),
    ] {
        let x0 = pad + i as f64 * (panel_w + pad);
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{pad}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle" font-size="13">{title}</text>"##,
            x0 + panel_w / 2.0,
            pad - 12.0
        );
        for t in 0..=4 {
            let v = ymax * t as f64 / 4.0;
            let y = pad + panel_h - v / ymax * panel_h;
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{v:.0}</text>"##,
                x0 + panel_w,
                x0 - 4.0,
                y + 4.0
            );
        }
        let mut seen = Vec::new();
        for n in &ns {
            if seen.contains(n) {
                continue;
            }
            seen.push(*n);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{n}</text>"#,
                x(*n, x0),
                pad + panel_h + 14.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">sensors (log scale)</text>"#,
            x0 + panel_w / 2.0,
            pad + panel_h + 30.0
        );
        for (k, (name, pts)) in series.iter().enumerate() {
            let color = colors[k % colors.len()];
            let mut pts: Vec<(f64, f64)> = pts
                .iter()
                .map(|r| {
                    let v = if i == 0 {
                        r.rounds_per_min
                    } else {
                        r.delivered_ms.1
                    };
                    (r.n as f64, v)
                })
                .filter(|(_, v)| v.is_finite())
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            let path: Vec<String> = pts
                .iter()
                .map(|(n, v)| {
                    format!(
                        "{:.1},{:.1}",
                        x(*n, x0),
                        pad + panel_h - (v / ymax).min(1.0) * panel_h
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for p in &path {
                let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
            }
            if i == 0 {
                let _ = writeln!(
                    s,
                    r#"<text x="{}" y="{}" fill="{color}">{name}</text>"#,
                    x0 + 8.0,
                    pad + 14.0 + k as f64 * 13.0
                );
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}
