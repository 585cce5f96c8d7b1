//! The query planner: which stored data answers a bucketed read, and what a read may cost.
//!
//! Every bucketed read (Grafana panels, Prometheus range queries, [`Store::buckets`],
//! stats) is planned here, by pure functions of the range, the bucket width and what the
//! store holds (the time of its oldest and newest point, how many points lie in the
//! range). No Redis: the store counts, calls [`plan`], and executes the plan
//! ([`Store::series`]). The rollup levels and every cost limit of a read live here.
//!
//! | width | plan | limit (refused past it, [`Refusal`]) |
//! |---|---|---|
//! | any, range of at most [`RAW_AGGREGATION_LIMIT`] points | raw points | — |
//! | under the finest rollup (10 s) | raw points, exact | [`SUB_ROLLUP_RAW_LIMIT`] points ([`Exactness::Chart`]) or [`RAW_STEP_LIMIT`] ([`Exactness::Exact`]) |
//! | a multiple of a rollup level | interior buckets from the coarsest dividing level, partial edge buckets exactly ([`decompose`]), in chunks of at most [`MAX_ROLLUPS_PER_CALL`] entries | [`MAX_ROLLUP_READS`] entries ([`Exactness::Exact`]) |
//! | 10 s or more, no level divides it | [`Exactness::Exact`]: raw points; [`Exactness::Chart`]: the coarsest level at most a tenth of the width, each rollup bucket in the output bucket holding its start (placement error under one rollup step) | as the rows above |
//!
//! [`Store::buckets`]: super::Store::buckets
//! [`Store::series`]: super::Store::series

/// Rollup levels (bucket widths in ms) maintained at ingest: 10 s, 1 min, 5 min, 1 h, 1 day.
/// Their ratios are small integers, so any range decomposes into few rollup buckets.
pub const ROLLUP_STEPS_MS: [i64; 5] = [10_000, 60_000, 300_000, 3_600_000, 86_400_000];

// Each level's step is a multiple of the one before it, so every bucket lies in exactly one
// bucket of each coarser level: the ingest script derives the coarser levels from the
// finest buckets it touched, and the planner composes ranges from nested buckets.
const _: () = {
    let mut i = 1;
    while i < ROLLUP_STEPS_MS.len() {
        assert!(ROLLUP_STEPS_MS[i] % ROLLUP_STEPS_MS[i - 1] == 0);
        i += 1;
    }
};

/// The finest rollup level (10 s).
pub const FINEST_MS: i64 = ROLLUP_STEPS_MS[0];

/// Ranges holding at most this many points are aggregated from raw points (cheaper than
/// assembling rollups for small ranges).
pub const RAW_AGGREGATION_LIMIT: u64 = 2_000;

/// Most raw points a chart read aggregates for a width under the finest rollup (10 s),
/// where no rollup can serve the buckets: about 14 hours of one-second rounds, read in
/// pages so Redis is never blocked for long. Past it such widths are refused; charts widen
/// to 10 s first ([`finest_chart_width`]).
pub const SUB_ROLLUP_RAW_LIMIT: u64 = 50_000;

/// Most raw points an exact read aggregates for a width that is not a multiple of the
/// finest rollup (a Prometheus step of 15 s).
pub const RAW_STEP_LIMIT: u64 = 200_000;

/// Most rollup entries an exact read may read, like Prometheus' `--query.max-samples`: the
/// work is bounded by the data read, not only by the number of output points (a 10-year
/// range at a step of 86 410 s has only 3 650 points but reads 8 641 ten-second rollups
/// for each). Counted after clamping the range to the stored history, so empty years cost
/// nothing.
pub const MAX_ROLLUP_READS: i64 = 500_000;

/// Most rollup entries one Redis call reads (half of Redis' Lua unpack limit; one long
/// script would block Redis for everyone else). Larger reads are split into chunks of
/// whole buckets, issued concurrently.
pub const MAX_ROLLUPS_PER_CALL: i64 = 4_000;

/// How exact the buckets of a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exactness {
    /// Every bucket exact (Prometheus): widths no rollup level serves come from raw
    /// points, up to [`RAW_STEP_LIMIT`]; rollup reads up to [`MAX_ROLLUP_READS`].
    Exact,
    /// Charts (Grafana, [`super::Store::buckets`]): widths of 10 s or more that no level
    /// divides are approximated from a finer level; widths under 10 s come from raw
    /// points up to [`SUB_ROLLUP_RAW_LIMIT`].
    Chart,
}

/// A bucketed read: buckets of `width_ms`, aligned to multiples of it since the epoch,
/// over `[from_ms, to_ms]` (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesQuery {
    /// First millisecond of the range.
    pub from_ms: i64,
    /// Last millisecond of the range (inclusive).
    pub to_ms: i64,
    /// Bucket width (> 0).
    pub width_ms: i64,
    /// How exact the buckets must be.
    pub exactness: Exactness,
}

/// Why a read is refused: its cost would pass a limit. The text tells the caller what to
/// ask instead; the HTTP adapters return it as a 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A zero or negative width.
    #[error("bucket width must be positive, got {0}")]
    BadWidth(i64),
    /// A chart width under 10 s over more than [`SUB_ROLLUP_RAW_LIMIT`] points.
    #[error("bucket width {width_ms} ms is finer than the finest rollup ({FINEST_MS} ms) and the range holds {points} points (limit {SUB_ROLLUP_RAW_LIMIT}); use a width of at least {FINEST_MS} ms or a shorter range")]
    SubRollupTooManyPoints {
        /// The width asked for.
        width_ms: i64,
        /// Points in the range.
        points: u64,
    },
    /// An exact read of more than [`MAX_ROLLUP_READS`] rollup entries.
    #[error("query would read {reads} rollup entries (limit {MAX_ROLLUP_READS}): a step of {}s reads {per_bucket} per point; use a step that is a multiple of 1m, 5m, 1h or 1d, or a shorter range", seconds(*.width_ms))]
    TooManyRollupReads {
        /// Entries the read would take.
        reads: i64,
        /// Entries per bucket.
        per_bucket: i64,
        /// The width (step) asked for.
        width_ms: i64,
    },
    /// An exact read with a width no level serves over more than [`RAW_STEP_LIMIT`] points.
    #[error("step {}s is not a multiple of 10s and the range holds {points} averages (limit {RAW_STEP_LIMIT}); use a step that is a multiple of 10s or a shorter range", seconds(*.width_ms))]
    RawStepTooManyPoints {
        /// The width (step) asked for.
        width_ms: i64,
        /// Points in the range.
        points: u64,
    },
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// One Redis read of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// Rollup buckets of `ROLLUP_STEPS_MS[level]` whose start lies in `[lo, hi]`, each
    /// added to the output bucket holding its start.
    Rollups {
        /// Index into [`ROLLUP_STEPS_MS`].
        level: usize,
        /// Lowest bucket start.
        lo: i64,
        /// Highest bucket start.
        hi: i64,
    },
    /// The exact aggregate of the points in `[from_ms, to_ms]` ([`decompose`]d into
    /// rollups and raw remainders), as the one output bucket `start_ms`.
    Exact {
        /// The output bucket.
        start_ms: i64,
        /// First millisecond.
        from_ms: i64,
        /// Last millisecond (inclusive).
        to_ms: i64,
    },
}

/// How a read is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing stored in the range.
    Empty,
    /// Aggregate the raw points of `[from_ms, to_ms]` into the buckets, exactly.
    Raw {
        /// First millisecond.
        from_ms: i64,
        /// Last millisecond (inclusive).
        to_ms: i64,
    },
    /// Rollup reads, in chunks: each inner list is one Redis call's worth (at most
    /// [`MAX_ROLLUPS_PER_CALL`] entries); chunks cover disjoint whole output buckets.
    Rollups(Vec<Vec<Read>>),
}

/// The width `width_ms` with the range clamped to the stored history `bounds` (oldest,
/// newest point); `None` when they do not overlap.
pub fn clamp(q: &SeriesQuery, bounds: (i64, i64)) -> Option<(i64, i64)> {
    let (from, to) = (q.from_ms.max(bounds.0), q.to_ms.min(bounds.1));
    (from <= to).then_some((from, to))
}

/// The plan of `q` over a store whose oldest and newest points are `bounds`, holding
/// `points` points in [`clamp`]`(q, bounds)`. Refuses reads past a limit.
pub fn plan(q: &SeriesQuery, bounds: (i64, i64), points: u64) -> Result<Plan, Refusal> {
    let width = q.width_ms;
    if width <= 0 {
        return Err(Refusal::BadWidth(width));
    }
    let Some((from, to)) = clamp(q, bounds) else {
        return Ok(Plan::Empty);
    };
    let multiple_of_finest = width % FINEST_MS == 0;
    match q.exactness {
        Exactness::Exact if !multiple_of_finest => {
            if points > RAW_STEP_LIMIT {
                return Err(Refusal::RawStepTooManyPoints {
                    width_ms: width,
                    points,
                });
            }
            return Ok(Plan::Raw {
                from_ms: from,
                to_ms: to,
            });
        }
        Exactness::Exact => {
            // Whole buckets between the first and the last one holding stored history.
            let first = floor_to(from, width);
            let end = (floor_to(to, width)).saturating_add(width);
            let per_bucket = rollups_per_bucket(width);
            let reads = ((end - first) / width).saturating_mul(per_bucket);
            if reads > MAX_ROLLUP_READS {
                return Err(Refusal::TooManyRollupReads {
                    reads,
                    per_bucket,
                    width_ms: width,
                });
            }
        }
        Exactness::Chart if width < FINEST_MS => {
            if points > SUB_ROLLUP_RAW_LIMIT {
                return Err(Refusal::SubRollupTooManyPoints {
                    width_ms: width,
                    points,
                });
            }
            return Ok(Plan::Raw {
                from_ms: from,
                to_ms: to,
            });
        }
        Exactness::Chart => {}
    }
    if points <= RAW_AGGREGATION_LIMIT {
        return Ok(Plan::Raw {
            from_ms: from,
            to_ms: to,
        });
    }
    let chunks = chunks(from, to, width)
        .into_iter()
        .map(|(a, b)| chunk_reads(from, a, b, width))
        .collect();
    Ok(Plan::Rollups(chunks))
}

/// The finest width a chart may use over a range holding `points` points: under
/// [`SUB_ROLLUP_RAW_LIMIT`] any, past it the finest rollup (a finer chart would be refused).
pub fn finest_chart_width(points: u64) -> i64 {
    if points > SUB_ROLLUP_RAW_LIMIT {
        FINEST_MS
    } else {
        1
    }
}

/// How many rollup entries a bucket of `width_ms` reads: the width divided by the coarsest
/// level dividing it (the finest level when none does).
pub fn rollups_per_bucket(width_ms: i64) -> i64 {
    let step = ROLLUP_STEPS_MS
        .iter()
        .rev()
        .copied()
        .find(|step| width_ms % step == 0)
        .unwrap_or(FINEST_MS);
    ((width_ms + step - 1) / step).max(1)
}

/// `[from, to]` cut into chunks of whole buckets of `width_ms` (the first and last may be
/// partial buckets at the range's edges), each reading at most [`MAX_ROLLUPS_PER_CALL`]
/// rollup entries.
pub fn chunks(from: i64, to: i64, width_ms: i64) -> Vec<(i64, i64)> {
    let per_call = (MAX_ROLLUPS_PER_CALL / rollups_per_bucket(width_ms)).max(1);
    let span = per_call.saturating_mul(width_ms.max(1));
    let mut out = Vec::new();
    let mut a = from;
    while a <= to {
        let b = floor_to(a, width_ms).saturating_add(span - 1).min(to);
        out.push((a, b));
        if b == i64::MAX {
            break;
        }
        a = b + 1;
    }
    out
}

/// The reads of one chunk `[a, b]` of a range starting at `range_from`.
fn chunk_reads(range_from: i64, a: i64, b: i64, width: i64) -> Vec<Read> {
    let mut reads = Vec::new();
    let Some(level) = ROLLUP_STEPS_MS.iter().rposition(|step| width % step == 0) else {
        // No level divides the width: the coarsest at most a tenth of it, each rollup
        // bucket counted once, in the chunk holding its start (the first chunk also takes
        // the one holding the range's first millisecond).
        let level = ROLLUP_STEPS_MS
            .iter()
            .rposition(|step| step * 10 <= width)
            .unwrap_or(0);
        let step = ROLLUP_STEPS_MS[level];
        let lo = if a == range_from {
            floor_to(a, step)
        } else {
            ceil_to(a, step)
        };
        reads.push(Read::Rollups { level, lo, hi: b });
        return reads;
    };
    let step = ROLLUP_STEPS_MS[level];
    let first_bucket = floor_to(a, width);
    let last_bucket = floor_to(b, width);
    let full = |s: i64| s >= a && s + width - 1 <= b;
    // Interior: buckets entirely inside [a, b], from rollups.
    let lo = if full(first_bucket) {
        first_bucket
    } else {
        first_bucket + width
    };
    let hi_end = if full(last_bucket) {
        last_bucket + width
    } else {
        last_bucket
    };
    if lo < hi_end {
        reads.push(Read::Rollups {
            level,
            lo,
            hi: hi_end - step,
        });
    }
    // Partially covered edge buckets, exactly.
    let mut edges = vec![first_bucket];
    if last_bucket != first_bucket {
        edges.push(last_bucket);
    }
    for s in edges.into_iter().filter(|s| !full(*s)) {
        reads.push(Read::Exact {
            start_ms: s,
            from_ms: s.max(a),
            to_ms: (s + width - 1).min(b),
        });
    }
    reads
}

/// One piece of [`decompose`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Rollup buckets of `ROLLUP_STEPS_MS[level]` with start in `[lo, hi]`.
    Rollups {
        /// Index into [`ROLLUP_STEPS_MS`].
        level: usize,
        /// Lowest bucket start.
        lo: i64,
        /// Highest bucket start.
        hi: i64,
    },
    /// Raw points in `[from_ms, to_ms]` (less than one finest rollup step).
    Raw {
        /// First millisecond.
        from_ms: i64,
        /// Last millisecond (inclusive).
        to_ms: i64,
    },
}

/// `[from_ms, to_ms]` as few rollup buckets as possible (coarse levels in the middle,
/// finer towards the edges) plus raw points for the sub-10-second remainders: their
/// aggregates merged are the exact aggregate of the range.
pub fn decompose(from_ms: i64, to_ms: i64) -> Vec<Piece> {
    let mut out = Vec::new();
    // Work list of (range, levels allowed); ranges are inclusive.
    let mut work = vec![(from_ms, to_ms, ROLLUP_STEPS_MS.len())];
    while let Some((a, b, levels)) = work.pop() {
        if a > b {
            continue;
        }
        if levels == 0 {
            out.push(Piece::Raw {
                from_ms: a,
                to_ms: b,
            });
            continue;
        }
        let level = levels - 1;
        let step = ROLLUP_STEPS_MS[level];
        let first_full = ceil_to(a, step);
        let end_full = floor_to(b.saturating_add(1), step); // exclusive
        if first_full < end_full {
            out.push(Piece::Rollups {
                level,
                lo: first_full,
                hi: end_full - step,
            });
            work.push((a, first_full - 1, level));
            work.push((end_full, b, level));
        } else {
            work.push((a, b, level));
        }
    }
    out
}

/// `x` rounded down to a multiple of `step`.
pub fn floor_to(x: i64, step: i64) -> i64 {
    x.div_euclid(step) * step
}

fn ceil_to(x: i64, step: i64) -> i64 {
    floor_to(x.saturating_add(step - 1), step)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // a day boundary
    const DAY: i64 = 86_400_000;

    fn q(from_ms: i64, to_ms: i64, width_ms: i64, exactness: Exactness) -> SeriesQuery {
        SeriesQuery {
            from_ms,
            to_ms,
            width_ms,
            exactness,
        }
    }

    #[test]
    fn rollup_reads_per_bucket() {
        assert_eq!(rollups_per_bucket(10_000), 1);
        assert_eq!(rollups_per_bucket(30_000), 3);
        assert_eq!(rollups_per_bucket(1_800_000), 6);
        assert_eq!(rollups_per_bucket(43_200_000), 12);
        assert_eq!(rollups_per_bucket(15_000), 2);
        assert_eq!(rollups_per_bucket(1_000), 1);
    }

    #[test]
    fn chunks_are_whole_buckets_covering_the_range() {
        let width = 1_800_000; // 6 rollups per bucket -> 666 buckets per call
        let end = 2_000 * width;
        let c = chunks(0, end - 1, width);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0], (0, 666 * width - 1));
        for w in c.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
            assert_eq!(w[1].0 % width, 0);
        }
        assert_eq!(c.last().map(|x| x.1), Some(end - 1));
        assert!(chunks(5, 4, 1000).is_empty());
        // An unaligned start: the first chunk ends on a bucket boundary all the same.
        let c = chunks(width / 2, end - 1, width);
        assert_eq!(c[0], (width / 2, 666 * width - 1));
    }

    #[test]
    fn nothing_stored_in_range_is_empty_and_bad_widths_are_refused() {
        let bounds = (T0, T0 + DAY);
        let before = q(0, T0 - 1, 60_000, Exactness::Chart);
        assert_eq!(plan(&before, bounds, 0), Ok(Plan::Empty));
        let zero = q(T0, T0 + DAY, 0, Exactness::Chart);
        assert_eq!(plan(&zero, bounds, 10), Err(Refusal::BadWidth(0)));
    }

    #[test]
    fn small_ranges_and_fine_widths_read_raw_points() {
        let bounds = (T0, T0 + DAY);
        let raw = Ok(Plan::Raw {
            from_ms: T0,
            to_ms: T0 + DAY,
        });
        let all = |w, e| q(i64::MIN / 2, i64::MAX / 2, w, e);
        assert_eq!(plan(&all(60_000, Exactness::Chart), bounds, 2_000), raw);
        assert_eq!(plan(&all(5_000, Exactness::Chart), bounds, 50_000), raw);
        assert_eq!(plan(&all(15_000, Exactness::Exact), bounds, 200_000), raw);
    }

    #[test]
    fn limits_refuse_with_the_step_to_use() {
        let bounds = (T0, T0 + DAY);
        let fine = plan(&q(T0, T0 + DAY, 5_000, Exactness::Chart), bounds, 50_001);
        let text = fine.unwrap_err().to_string();
        assert!(
            text.contains("10000 ms") && text.contains("limit 50000"),
            "{text}"
        );
        let odd = plan(&q(T0, T0 + DAY, 15_000, Exactness::Exact), bounds, 200_001);
        assert_eq!(
            odd.unwrap_err().to_string(),
            "step 15s is not a multiple of 10s and the range holds 200001 averages (limit 200000); use a step that is a multiple of 10s or a shorter range"
        );
        // Ten years at 86 410 s: 8 641 ten-second rollups per point.
        let years = (T0 - 3_650 * DAY, T0);
        let wide = plan(
            &q(years.0, years.1, 86_410_000, Exactness::Exact),
            years,
            10_000,
        );
        assert_eq!(
            wide.unwrap_err(),
            Refusal::TooManyRollupReads {
                reads: 3_650 * 8_641,
                per_bucket: 8_641,
                width_ms: 86_410_000
            }
        );
        // The same range at one day reads one entry per point; only the stored part counts.
        let daily = q(years.0 - 100 * 3_650 * DAY, years.1, DAY, Exactness::Exact);
        assert!(matches!(plan(&daily, years, 10_000), Ok(Plan::Rollups(_))));
        // Charts are not bounded by rollup reads (their grid is).
        let chart = q(years.0, years.1, 86_410_000, Exactness::Chart);
        assert!(matches!(plan(&chart, years, 10_000), Ok(Plan::Rollups(_))));
    }

    #[test]
    fn dividing_widths_read_the_coarsest_level_and_exact_edges() {
        let bounds = (T0, T0 + DAY);
        // Hour buckets over [T0 + 30 min, T0 + 5 h 30 min): 4 full hours from the 1 h
        // level, the two half hours at the edges exactly.
        let from = T0 + 1_800_000;
        let to = T0 + 5 * 3_600_000 + 1_800_000 - 1;
        let got = plan(&q(from, to, 3_600_000, Exactness::Chart), bounds, 5_000);
        assert_eq!(
            got,
            Ok(Plan::Rollups(vec![vec![
                Read::Rollups {
                    level: 3,
                    lo: T0 + 3_600_000,
                    hi: T0 + 4 * 3_600_000
                },
                Read::Exact {
                    start_ms: T0,
                    from_ms: from,
                    to_ms: T0 + 3_600_000 - 1
                },
                Read::Exact {
                    start_ms: T0 + 5 * 3_600_000,
                    from_ms: T0 + 5 * 3_600_000,
                    to_ms: to
                },
            ]]))
        );
    }

    #[test]
    fn non_dividing_chart_widths_count_each_rollup_once_across_chunks() {
        // 15 s buckets read 10 s rollups: 2 000 buckets per chunk.
        let from = T0 + 5_000;
        let to = T0 + 3 * 2_000 * 15_000;
        let Ok(Plan::Rollups(chunks)) =
            plan(&q(from, to, 15_000, Exactness::Chart), (T0, to), 9_999)
        else {
            panic!("expected rollups")
        };
        assert_eq!(chunks.len(), 4);
        let ranges: Vec<(i64, i64)> = chunks
            .iter()
            .flatten()
            .map(|r| match r {
                Read::Rollups { level: 0, lo, hi } => (*lo, *hi),
                other => panic!("{other:?}"),
            })
            .collect();
        // The first takes the rollup holding `from`; then every 10 s start exactly once.
        assert_eq!(ranges[0].0, T0);
        for w in ranges.windows(2) {
            assert!(w[1].0 > w[0].1 && w[1].0 - w[0].1 <= 10_000, "{w:?}");
            assert_eq!(w[1].0 % 10_000, 0);
        }
    }

    #[test]
    fn decomposition_covers_the_range_exactly_once() {
        for (from, to) in [
            (T0 + 1, T0 + 3 * DAY - 7),
            (T0, T0 + DAY - 1),
            (T0 + 9_999, T0 + 10_000),
            (T0 + 3, T0 + 4),
        ] {
            let mut covered: Vec<(i64, i64)> = decompose(from, to)
                .into_iter()
                .map(|p| match p {
                    Piece::Rollups { level, lo, hi } => (lo, hi + ROLLUP_STEPS_MS[level] - 1),
                    Piece::Raw { from_ms, to_ms } => {
                        assert!(to_ms - from_ms < FINEST_MS);
                        (from_ms, to_ms)
                    }
                })
                .collect();
            covered.sort();
            assert_eq!(covered.first().map(|c| c.0), Some(from));
            assert_eq!(covered.last().map(|c| c.1), Some(to));
            for w in covered.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0, "{from} {to}: {covered:?}");
            }
        }
        let whole_day = decompose(T0, T0 + DAY - 1);
        assert_eq!(
            whole_day,
            vec![Piece::Rollups {
                level: 4,
                lo: T0,
                hi: T0
            }]
        );
    }

    #[test]
    fn charts_widen_to_ten_seconds_past_the_raw_limit() {
        assert_eq!(finest_chart_width(SUB_ROLLUP_RAW_LIMIT), 1);
        assert_eq!(finest_chart_width(SUB_ROLLUP_RAW_LIMIT + 1), 10_000);
    }
}
