//! Reading per-bucket aggregates from the store in bounded chunks.
//!
//! [`Store::buckets`] assembles a grid from rollup entries, and one call reads them all in
//! one Redis script. Redis' Lua cannot unpack more than ~8 000 values in one call, and one
//! long script blocks Redis for everyone else, so a grid is read in chunks of whole
//! buckets, each reading at most [`MAX_ROLLUPS_PER_CALL`] rollup entries, issued
//! concurrently on the store's multiplexed connection. Chunk boundaries are bucket
//! boundaries, so every chunk covers whole buckets and the result equals one big call.

use futures::future::try_join_all;

use crate::store::{Bucket, Store, StoreError, ROLLUP_STEPS_MS};

/// Upper bound on rollup entries one store call reads (half of Redis' unpack limit).
pub const MAX_ROLLUPS_PER_CALL: i64 = 4_000;

/// How many rollup entries the store reads per bucket of `width_ms`: the width divided by
/// the coarsest rollup step dividing it (the finest step when none does).
pub fn rollups_per_bucket(width_ms: i64) -> i64 {
    let step = ROLLUP_STEPS_MS
        .iter()
        .rev()
        .copied()
        .find(|step| width_ms % step == 0)
        .unwrap_or(ROLLUP_STEPS_MS[0]);
    ((width_ms + step - 1) / step).max(1)
}

/// The chunks `[a, b]` (inclusive) that [`read_buckets`] asks the store for.
pub fn chunks(first_ms: i64, end_ms: i64, width_ms: i64) -> Vec<(i64, i64)> {
    let per_call = (MAX_ROLLUPS_PER_CALL / rollups_per_bucket(width_ms)).max(1);
    let span = per_call.saturating_mul(width_ms.max(1));
    let mut out = Vec::new();
    let mut a = first_ms;
    while a < end_ms {
        let b = a.saturating_add(span).min(end_ms);
        out.push((a, b - 1));
        a = b;
    }
    out
}

/// Non-empty buckets of `width_ms` over `[first_ms, end_ms)`, ascending; `first_ms` and
/// `end_ms` must be multiples of `width_ms`. Fails like [`Store::buckets`].
pub async fn read_buckets(
    store: &Store,
    first_ms: i64,
    end_ms: i64,
    width_ms: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let calls = chunks(first_ms, end_ms, width_ms)
        .into_iter()
        .map(|(a, b)| store.buckets(a, b, width_ms));
    Ok(try_join_all(calls).await?.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let c = chunks(0, end, width);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0], (0, 666 * width - 1));
        for w in c.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
            assert_eq!(w[1].0 % width, 0);
        }
        assert_eq!(c.last().map(|x| x.1), Some(end - 1));
        assert!(chunks(5, 5, 1000).is_empty());
    }
}
