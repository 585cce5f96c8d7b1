//! The time grid a chart query is answered on: "nice", epoch-aligned buckets.
//!
//! Grafana asks for a time range, a `maxDataPoints` budget (about one point per pixel) and
//! a minimum `intervalMs`. We answer with one point per bucket of a fixed width, so a year
//! of history costs the same as an hour. The width is the smallest "nice" duration (1 s,
//! 5 s, 1 min, 1 h, ...) that is at least `intervalMs` and keeps the number of buckets
//! covering the range at or under `maxDataPoints`. Buckets start at multiples of the width
//! since the Unix epoch, so the same history always falls into the same buckets (stable
//! charts on refresh, and the store can serve them from pre-aggregated rollups).
//!
//! From 10 s up, every width is a multiple of the store's finest rollup (10 s) and the
//! coarsest rollup dividing it serves the query (see `store::planner`); finer
//! widths are only exact when the store aggregates raw points, which the query handler
//! checks.
//!
//! Invariants of a [`Grid`]: `width_ms >= 1`, `first_ms` is a multiple of `width_ms`,
//! `first_ms <= from_ms`, the last bucket contains `to_ms`, and `len() <= max_points`.

/// Widths a grid may use, ascending. Past the last one, widths grow in whole weeks.
const NICE_WIDTHS_MS: &[i64] = &[
    1,
    2,
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    SECOND,
    2 * SECOND,
    5 * SECOND,
    10 * SECOND,
    20 * SECOND,
    30 * SECOND,
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    WEEK,
];

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const WEEK: i64 = 7 * DAY;

/// Upper bound on the points one series may have, whatever the client asks: bounds the
/// memory and time of one query (Grafana asks for about one point per pixel, < 10 000).
pub const MAX_POINTS_CAP: u64 = 20_000;

/// Widest bucket a client's `intervalMs` can ask for (a century; wider changes nothing but
/// risks overflow in bucket arithmetic).
pub const MAX_WIDTH_MS: i64 = 100 * 365 * DAY;

/// Most widths [`Grid::choose`] tries; bounds its time whatever the input.
const MAX_WIDTH_TRIES: usize = 1 << 20;

/// A range cut into equal, epoch-aligned buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of the first bucket (epoch ms); a multiple of `width_ms`, at or before `from`.
    pub first_ms: i64,
    /// Width of every bucket in milliseconds (>= 1).
    pub width_ms: i64,
    /// Number of buckets; at least 1.
    pub buckets: usize,
}

impl Grid {
    /// Picks the grid for `[from_ms, to_ms]` (both inclusive, `from_ms <= to_ms`).
    ///
    /// `max_points` is clamped to `1..=MAX_POINTS_CAP`; `min_width_ms` (Grafana's
    /// `intervalMs`, 0 when absent) is a lower bound on the width.
    pub fn choose(from_ms: i64, to_ms: i64, max_points: u64, min_width_ms: i64) -> Grid {
        let max_points = max_points.clamp(1, MAX_POINTS_CAP) as i64;
        let span = to_ms.saturating_sub(from_ms).max(0);
        // Width so that ceil(span / width) + 1 <= max_points, i.e. the aligned buckets fit.
        let min_width_ms = min_width_ms.clamp(0, MAX_WIDTH_MS);
        let wanted = (span / max_points).max(min_width_ms).max(1);
        // Whole weeks start at the first one >= `wanted` (computed, not counted up to: a
        // client's `intervalMs` of 1e19 must not become 10^13 loop turns).
        let first_week = (wanted / WEEK + i64::from(wanted % WEEK != 0)).max(1);
        let candidates = NICE_WIDTHS_MS
            .iter()
            .copied()
            .filter(move |w| *w >= wanted)
            .chain((first_week..=i64::MAX / WEEK).map(|weeks| weeks * WEEK));
        // Once the width reaches the span, at most 2 buckets remain, so for max_points >= 2
        // the search ends within about span / WEEK turns (< 600 000 for year 0 to 9999);
        // the bound only matters for max_points = 1 across an alignment boundary.
        let mut last = Grid::with_width(from_ms, to_ms, wanted);
        for width in candidates.take(MAX_WIDTH_TRIES) {
            last = Grid::with_width(from_ms, to_ms, width);
            if last.buckets as i64 <= max_points {
                return last;
            }
        }
        last
    }

    /// The grid of fixed `width_ms` (>= 1) covering `[from_ms, to_ms]`.
    pub fn with_width(from_ms: i64, to_ms: i64, width_ms: i64) -> Grid {
        let width_ms = width_ms.max(1);
        let first_ms = from_ms.div_euclid(width_ms) * width_ms;
        let last_ms = to_ms.max(from_ms).div_euclid(width_ms) * width_ms;
        let buckets = ((last_ms - first_ms) / width_ms + 1) as usize;
        Grid {
            first_ms,
            width_ms,
            buckets,
        }
    }

    /// Start (epoch ms) of bucket `i`.
    pub fn start_of(&self, i: usize) -> i64 {
        self.first_ms + self.width_ms * i as i64
    }

    /// End (exclusive) of the last bucket: the store is asked for `[first_ms, end_ms)`.
    pub fn end_ms(&self) -> i64 {
        self.start_of(self.buckets)
    }

    /// Index of the bucket starting at `start_ms`, if it is on this grid.
    pub fn index_of(&self, start_ms: i64) -> Option<usize> {
        let offset = start_ms.checked_sub(self.first_ms)?;
        if offset < 0 || offset % self.width_ms != 0 {
            return None;
        }
        let i = (offset / self.width_ms) as usize;
        (i < self.buckets).then_some(i)
    }

    /// Lays `(start_ms, value)` pairs onto the grid: one `(value, start_ms)` per bucket,
    /// ascending, `None` where nothing was given. Pairs off the grid are dropped.
    pub fn fill(&self, values: impl IntoIterator<Item = (i64, f64)>) -> Vec<(Option<f64>, i64)> {
        let mut out: Vec<(Option<f64>, i64)> = (0..self.buckets)
            .map(|i| (None, self.start_of(i)))
            .collect();
        for (start, value) in values {
            if let Some(i) = self.index_of(start) {
                out[i].0 = Some(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hour_at_1000_points_uses_5s_buckets() {
        let from = 1_700_000_000_000;
        let g = Grid::choose(from, from + HOUR, 1000, 0);
        // 3600 s / 1000 = 3.6 s -> 5 s is the next nice width.
        assert_eq!(g.width_ms, 5 * SECOND);
        assert!(g.buckets <= 1000);
        assert_eq!(g.first_ms % g.width_ms, 0);
        assert!(g.first_ms <= from && g.end_ms() > from + HOUR);
    }

    #[test]
    fn interval_is_a_lower_bound() {
        let g = Grid::choose(0, HOUR, 1000, 25 * SECOND);
        assert_eq!(g.width_ms, 30 * SECOND);
        let g = Grid::choose(0, HOUR, 1000, 15 * SECOND);
        assert_eq!(g.width_ms, 20 * SECOND);
    }

    #[test]
    fn exact_fit_steps_up_when_alignment_adds_a_bucket() {
        // 10 points over 10 s wants 1 s, but [0.5 s, 10.5 s] touches 11 one-second buckets.
        let g = Grid::choose(500, 10_500, 10, 0);
        assert_eq!(g.width_ms, 2 * SECOND);
        assert_eq!(g.buckets, 6);
        assert_eq!(g.first_ms, 0);
    }

    #[test]
    fn never_exceeds_max_points_for_many_ranges() {
        let mut from = 1_234_567;
        for span in [
            0,
            1,
            999,
            59_999,
            HOUR + 7,
            3 * DAY + 11,
            400 * DAY,
            30 * 365 * DAY,
        ] {
            for max in [1, 2, 7, 100, 1000, 1920, 100_000] {
                let g = Grid::choose(from, from + span, max, 0);
                assert!(
                    g.buckets as u64 <= max.min(MAX_POINTS_CAP),
                    "{span} {max} {g:?}"
                );
                assert!(g.first_ms <= from);
                assert!(g.end_ms() > from + span);
                assert_eq!(g.first_ms % g.width_ms, 0);
                from += 777;
            }
        }
    }

    #[test]
    fn widths_from_10s_up_are_multiples_of_the_finest_rollup() {
        for w in NICE_WIDTHS_MS.iter().filter(|w| **w >= 10 * SECOND) {
            assert_eq!(w % (10 * SECOND), 0, "{w}");
        }
    }

    #[test]
    fn huge_ranges_use_whole_weeks() {
        let g = Grid::choose(0, 100 * 365 * DAY, 1000, 0);
        assert_eq!(g.width_ms % WEEK, 0);
        assert!(g.buckets <= 1000);
    }

    #[test]
    fn absurd_intervals_are_computed_not_iterated() {
        let started = std::time::Instant::now();
        for interval in [i64::MAX, i64::MAX / 2, 10_000_000_000_000_000, 1 << 40] {
            let g = Grid::choose(0, HOUR, 1000, interval);
            assert!(g.buckets <= 2, "{g:?}");
            assert!(g.width_ms >= interval.min(MAX_WIDTH_MS), "{g:?}");
            assert_eq!(g.width_ms % WEEK, 0);
        }
        let g = Grid::choose(-300 * 365 * DAY, 9000 * 365 * DAY, 3, 0);
        assert!(g.buckets <= 3, "{g:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn negative_epoch_aligns_downwards() {
        let g = Grid::with_width(-1500, 500, SECOND);
        assert_eq!(g.first_ms, -2000);
        assert_eq!(g.buckets, 3);
    }

    #[test]
    fn fill_puts_nulls_in_gaps_and_keeps_order() {
        let g = Grid::with_width(0, 4_999, SECOND);
        let filled = g.fill([(3_000, 3.0), (0, 1.0), (1_500, 9.0), (99_000, 9.0)]);
        assert_eq!(
            filled,
            vec![
                (Some(1.0), 0),
                (None, 1_000),
                (None, 2_000),
                (Some(3.0), 3_000),
                (None, 4_000)
            ]
        );
    }
}
