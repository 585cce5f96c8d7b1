//! Rollups: per-bucket aggregates kept at ingest, and the exact aggregation of ranges and
//! bucket grids from them.
//!
//! `lua/rollup_range.lua` reads the rollup buckets of one level with start in `[lo, hi]`
//! (KEYS: rollidx, roll, rollup; ARGV: lo, hi, step) and returns flat
//! `[start, pre-upgrade aggregate or "", aggregate or "", ...]`.

use std::collections::BTreeMap;

use super::{Average, Bucket, Cursor, Store, StoreError};

/// Rollup levels (bucket widths in ms) maintained at ingest: 10 s, 1 min, 5 min, 1 h, 1 day.
/// Their ratios are small integers, so any range decomposes into few rollup buckets.
pub const ROLLUP_STEPS_MS: [i64; 5] = [10_000, 60_000, 300_000, 3_600_000, 86_400_000];

/// Below this many raw points in a range, [`Store::buckets`] aggregates raw points directly
/// (cheaper than assembling rollups for small ranges).
const RAW_AGGREGATION_LIMIT: u64 = 2_000;

/// Most raw points [`Store::buckets`] aggregates for a bucket width under the finest rollup
/// (10 s), where no rollup can serve the buckets. About 14 hours of one-second rounds: the
/// points are read in pages of [`RAW_PAGE`], so Redis is never blocked for long, and one
/// call costs a few hundred milliseconds at most. Past it, such widths are refused
/// ([`StoreError::InvalidArgument`]); callers widen to 10 s first (the Grafana layer checks
/// this limit with [`Store::count_range`] before asking).
pub const SUB_ROLLUP_RAW_LIMIT: u64 = 50_000;

/// Points read per script call when aggregating raw points.
const RAW_PAGE: usize = 5_000;

/// The rollup range script (see the module doc).
pub(super) const ROLLUP_RANGE_LUA: &str = include_str!("lua/rollup_range.lua");

/// Parses a rollup aggregate string (`count sum min max last last_ms samples`).
pub(super) fn parse_agg(start_ms: i64, text: &str) -> Result<(Bucket, i64), StoreError> {
    let parts: Vec<f64> = text
        .split_whitespace()
        .map(|w| w.parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| StoreError::Corrupt(format!("rollup aggregate {text:?}")))?;
    if parts.len() != 7 {
        return Err(StoreError::Corrupt(format!("rollup aggregate {text:?}")));
    }
    Ok((
        Bucket {
            start_ms,
            count: parts[0] as u64,
            sum: parts[1],
            min: parts[2],
            max: parts[3],
            last: parts[4],
            samples_sum: parts[6] as u64,
        },
        parts[5] as i64,
    ))
}

/// Running aggregate used to merge rollup buckets and raw points.
#[derive(Clone, Debug)]
pub(super) struct Acc {
    pub(super) bucket: Bucket,
    pub(super) last_ms: i64,
}

impl Acc {
    pub(super) fn merge(&mut self, other: &Bucket, other_last_ms: i64) {
        let b = &mut self.bucket;
        if b.count == 0 {
            *b = Bucket {
                start_ms: b.start_ms,
                ..other.clone()
            };
            self.last_ms = other_last_ms;
            return;
        }
        b.count += other.count;
        b.sum += other.sum;
        b.min = b.min.min(other.min);
        b.max = b.max.max(other.max);
        b.samples_sum += other.samples_sum;
        if other_last_ms >= self.last_ms {
            b.last = other.last;
            self.last_ms = other_last_ms;
        }
    }

    pub(super) fn empty(start_ms: i64) -> Acc {
        Acc {
            bucket: Bucket {
                start_ms,
                count: 0,
                sum: 0.0,
                min: 0.0,
                max: 0.0,
                last: 0.0,
                samples_sum: 0,
            },
            last_ms: i64::MIN,
        }
    }

    pub(super) fn add_point(&mut self, a: &Average) {
        let p = Bucket {
            start_ms: 0,
            count: 1,
            sum: a.value,
            min: a.value,
            max: a.value,
            last: a.value,
            samples_sum: u64::from(a.samples),
        };
        self.merge(&p, a.taken_at_ms);
    }
}

pub(super) fn floor_to(x: i64, step: i64) -> i64 {
    x.div_euclid(step) * step
}

impl Store {
    /// Rollup buckets of level `level` whose start lies in `[lo, hi]`, with their last_ms.
    pub(super) async fn rollups(
        &self,
        level: usize,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(Bucket, i64)>, StoreError> {
        let mut conn = self.conn.clone();
        let flat: Vec<String> = self
            .timed(
                self.scripts
                    .rollup_range
                    .key(&self.keys.rollidx[level])
                    .key(&self.keys.roll[level])
                    .key(&self.keys.rollup)
                    .arg(lo)
                    .arg(hi)
                    .arg(ROLLUP_STEPS_MS[level])
                    .invoke_async(&mut conn),
            )
            .await?;
        if !flat.len().is_multiple_of(3) {
            return Err(StoreError::Corrupt(format!(
                "rollup range returned {} fields",
                flat.len()
            )));
        }
        flat.chunks(3)
            .map(|t| {
                let start: i64 = t[0]
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("rollup start {:?}", t[0])))?;
                // A bucket may have a part written before the upgrade (`P:roll:<step>`)
                // and a part written after it (`P:rollup`): their merge is the bucket.
                let mut acc = Acc::empty(start);
                for text in [&t[1], &t[2]].into_iter().filter(|x| !x.is_empty()) {
                    let (b, last_ms) = parse_agg(start, text)?;
                    acc.merge(&b, last_ms);
                }
                Ok((acc.bucket, acc.last_ms))
            })
            .collect()
    }

    /// Exact aggregate of all points in `[from_ms, to_ms]`, from as few rollup buckets as
    /// possible (coarse levels in the middle, finer towards the edges, raw points only for
    /// the sub-10-second remainders). The range should first be clamped to the data.
    pub(super) async fn aggregate_exact(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Acc, StoreError> {
        let mut acc = Acc::empty(from_ms);
        // Work list of (range, highest level allowed); ranges are inclusive.
        let mut work = vec![(from_ms, to_ms, ROLLUP_STEPS_MS.len())];
        while let Some((a, b, levels)) = work.pop() {
            if a > b {
                continue;
            }
            if levels == 0 {
                // Less than one finest rollup step (10 s) of raw points.
                for p in self.range_asc(a, b, usize::MAX >> 1).await? {
                    acc.add_point(&p);
                }
                continue;
            }
            let level = levels - 1;
            let step = ROLLUP_STEPS_MS[level];
            let first_full = floor_to(a + step - 1, step);
            let end_full = floor_to(b + 1, step); // exclusive
            if first_full < end_full {
                for (bucket, last_ms) in self.rollups(level, first_full, end_full - step).await? {
                    acc.merge(&bucket, last_ms);
                }
                work.push((a, first_full - 1, level));
                work.push((end_full, b, level));
            } else {
                work.push((a, b, level));
            }
        }
        Ok(acc)
    }

    /// Aggregates per bucket of `bucket_ms` (aligned to multiples of bucket_ms since epoch)
    /// over [from_ms, to_ms]; only non-empty buckets, ascending.
    ///
    /// Fast on huge histories: buckets fully inside the range are assembled from the
    /// coarsest rollup level whose width divides `bucket_ms`; the (at most two) partially
    /// covered edge buckets are computed exactly. Small ranges (few raw points) are
    /// aggregated from raw points. If no rollup width divides `bucket_ms` and the range is
    /// large, the coarsest rollup level at most a tenth of `bucket_ms` wide (else the 10 s
    /// level) is used, each of its buckets attributed to the output bucket containing its
    /// start: an approximation of at most one rollup step at bucket edges (every output
    /// bucket of 10 s or more contains a rollup start, so none is left spuriously empty).
    /// Callers wanting exact edges pick widths that are multiples of 10 s, 1 min, 5 min,
    /// 1 h or 1 day. Widths under 10 s are always aggregated from raw points, exactly, up
    /// to [`SUB_ROLLUP_RAW_LIMIT`] points in the range.
    ///
    /// Fails when Redis does ([`StoreError::Unavailable`]), and with
    /// [`StoreError::InvalidArgument`] for `bucket_ms <= 0` or a width under 10 s over more
    /// than [`SUB_ROLLUP_RAW_LIMIT`] points.
    pub async fn buckets(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        if bucket_ms <= 0 {
            return Err(StoreError::InvalidArgument(format!(
                "bucket width must be positive, got {bucket_ms}"
            )));
        }
        let Some((first, last)) = self.time_bounds().await? else {
            return Ok(Vec::new());
        };
        let (from_ms, to_ms) = (from_ms.max(first), to_ms.min(last));
        if from_ms > to_ms {
            return Ok(Vec::new());
        }
        let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
        let mut add = |start: i64, b: &Bucket, last_ms: i64| {
            out.entry(start)
                .or_insert_with(|| Acc::empty(start))
                .merge(b, last_ms);
        };
        let raw_count = self.count_range(from_ms, to_ms).await?;
        let level = ROLLUP_STEPS_MS
            .iter()
            .rposition(|step| bucket_ms % step == 0);
        let sub_rollup = bucket_ms < ROLLUP_STEPS_MS[0];
        if sub_rollup && raw_count > SUB_ROLLUP_RAW_LIMIT {
            // Rollups are 10 s wide: they would fill only every few sub-10-second buckets
            // and leave the others empty, which reads as outages. Refuse instead.
            return Err(StoreError::InvalidArgument(format!(
                "bucket width {bucket_ms} ms is finer than the finest rollup ({} ms) and the range holds {raw_count} points (limit {SUB_ROLLUP_RAW_LIMIT}); use a width of at least {} ms or a shorter range",
                ROLLUP_STEPS_MS[0], ROLLUP_STEPS_MS[0]
            )));
        }
        if raw_count <= RAW_AGGREGATION_LIMIT || sub_rollup {
            let mut after: Option<Cursor> = None;
            loop {
                let page = self
                    .page_asc(from_ms, to_ms, after.as_ref(), RAW_PAGE)
                    .await?;
                let full = page.len() == RAW_PAGE;
                for p in &page {
                    let mut acc = Acc::empty(0);
                    acc.add_point(&p.average);
                    add(
                        floor_to(p.average.taken_at_ms, bucket_ms),
                        &acc.bucket,
                        acc.last_ms,
                    );
                }
                match page.into_iter().last() {
                    Some(p) if full => after = Some(p.cursor),
                    _ => break,
                }
            }
        } else if let Some(level) = level {
            let step = ROLLUP_STEPS_MS[level];
            let first_bucket = floor_to(from_ms, bucket_ms);
            let last_bucket = floor_to(to_ms, bucket_ms);
            let full = |s: i64| s >= from_ms && s + bucket_ms - 1 <= to_ms;
            // Interior: buckets entirely inside [from_ms, to_ms], from rollups.
            let lo = if full(first_bucket) {
                first_bucket
            } else {
                first_bucket + bucket_ms
            };
            let hi_end = if full(last_bucket) {
                last_bucket + bucket_ms
            } else {
                last_bucket
            };
            if lo < hi_end {
                for (b, last_ms) in self.rollups(level, lo, hi_end - step).await? {
                    add(floor_to(b.start_ms, bucket_ms), &b, last_ms);
                }
            }
            // Partially covered edge buckets, exactly.
            let mut edges = vec![first_bucket];
            if last_bucket != first_bucket {
                edges.push(last_bucket);
            }
            for s in edges.into_iter().filter(|s| !full(*s)) {
                let acc = self
                    .aggregate_exact(s.max(from_ms), (s + bucket_ms - 1).min(to_ms))
                    .await?;
                if acc.bucket.count > 0 {
                    add(s, &acc.bucket, acc.last_ms);
                }
            }
        } else {
            // No rollup width divides bucket_ms: take the coarsest level at most a tenth of
            // the bucket width and attribute each of its buckets to the output bucket that
            // contains its start (placement error at most one rollup step, never slow).
            let level = ROLLUP_STEPS_MS
                .iter()
                .rposition(|step| step * 10 <= bucket_ms)
                .unwrap_or(0);
            let step = ROLLUP_STEPS_MS[level];
            for (b, last_ms) in self.rollups(level, floor_to(from_ms, step), to_ms).await? {
                add(floor_to(b.start_ms, bucket_ms), &b, last_ms);
            }
        }
        Ok(out
            .into_values()
            .filter(|a| a.bucket.count > 0)
            .map(|a| a.bucket)
            .collect())
    }
}
