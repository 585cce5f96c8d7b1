//! Property tests of the parsers that read hostile input: the PromQL subset, Prometheus
//! times and durations, and the Grafana grid. Arbitrary input never panics, and parsing
//! never recurses unboundedly: every case runs on a thread with a deliberately small stack
//! (256 KiB), where the old recursive-descent parser overflowed on a few thousand `(` or
//! `-` and aborted the whole process.

use proptest::prelude::*;
use sensor_api::grafana::grid::{Grid, MAX_POINTS_CAP};
use sensor_api::prom::params::{parse_duration, parse_time};
use sensor_api::prom::promql::{self, MAX_QUERY_BYTES};

/// Runs `f` on a thread with a small stack; a stack overflow aborts the test binary, a
/// panic fails the case.
fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic");
}

/// Query-like text: PromQL tokens glued together, biased towards nesting.
fn promql_like() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("-".to_string()),
        Just("+".to_string()),
        Just("*".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(",".to_string()),
        Just("=~".to_string()),
        Just("!~".to_string()),
        Just("\"".to_string()),
        Just("`".to_string()),
        Just("#".to_string()),
        Just("\n".to_string()),
        Just("sensor_average".to_string()),
        Just("job".to_string()),
        Just("1e3".to_string()),
        Just("rate(".to_string()),
        Just("[5m]".to_string()),
        Just(" offset 1m".to_string()),
        "[a-z_]{1,8}",
        "\\\\[wdsWDS]\\{[0-9]{1,4}\\}",
        "[0-9.eE+-]{1,6}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..400).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn promql_never_panics_on_token_soup(query in promql_like()) {
        on_small_stack(move || {
            let _ = promql::parse(&query);
            let _ = promql::parse_selector(&query);
        });
    }

    #[test]
    fn promql_never_panics_on_arbitrary_text(query in ".{0,600}") {
        on_small_stack(move || {
            let _ = promql::parse(&query);
        });
    }

    #[test]
    fn deep_nesting_is_refused_not_recursed(depth in 0usize..5000, open in "[(+-]") {
        on_small_stack(move || {
            let close = if open == "(" { ")" } else { "" };
            let q = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            match promql::parse(&q) {
                Ok(_) => assert!(depth <= promql::MAX_DEPTH, "depth {depth} accepted"),
                Err(e) => assert!(
                    depth >= promql::MAX_DEPTH - 1 || q.len() > MAX_QUERY_BYTES,
                    "depth {depth}: {e}"
                ),
            }
        });
    }

    #[test]
    fn prometheus_times_and_durations_never_panic(text in ".{0,64}", n in any::<f64>()) {
        let _ = parse_time(&text);
        let _ = parse_duration(&text);
        let _ = parse_time(&n.to_string());
        if let Ok(ms) = parse_duration(&n.to_string()) {
            prop_assert!(ms >= 1);
        }
    }

    #[test]
    fn grids_are_bounded_for_any_input(
        from in -62_000_000_000_000i64..253_000_000_000_000,
        span in 0i64..300_000_000_000_000,
        max_points in any::<u64>(),
        interval in any::<i64>(),
    ) {
        let to = from.saturating_add(span);
        let g = Grid::choose(from, to, max_points, interval);
        prop_assert!(g.width_ms >= 1);
        prop_assert!(g.buckets as u64 <= MAX_POINTS_CAP.max(2));
        prop_assert!(g.first_ms <= from);
        prop_assert!(g.end_ms() > to);
    }
}
