//! Rollups: reading the per-bucket aggregates kept at ingest, and executing the query
//! planner's plans ([`super::planner`]): bucketed series and exact range aggregates.
//!
//! `lua/rollup_range.lua` reads the rollup buckets of one level with start in `[lo, hi]`
//! (KEYS: rollidx, roll, rollup; ARGV: lo, hi, step) and returns flat
//! `[start, pre-upgrade aggregate or "", aggregate or "", ...]`.

use std::collections::BTreeMap;

use futures::future::try_join_all;

use super::planner::{self, Piece, Plan, Read, Refusal, SeriesQuery, ROLLUP_STEPS_MS};
use super::{Average, Bucket, Cursor, Store, StoreError};

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
            sum: a.result.value,
            min: a.result.value,
            max: a.result.value,
            last: a.result.value,
            samples_sum: u64::from(a.result.samples),
        };
        self.merge(&p, a.taken_at_ms);
    }
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
    /// possible ([`planner::decompose`]). The range should first be clamped to the data.
    pub(super) async fn aggregate_exact(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Acc, StoreError> {
        let mut acc = Acc::empty(from_ms);
        for piece in planner::decompose(from_ms, to_ms) {
            match piece {
                Piece::Rollups { level, lo, hi } => {
                    for (bucket, last_ms) in self.rollups(level, lo, hi).await? {
                        acc.merge(&bucket, last_ms);
                    }
                }
                Piece::Raw { from_ms, to_ms } => {
                    for p in self.range_asc(from_ms, to_ms, usize::MAX >> 1).await? {
                        acc.add_point(&p);
                    }
                }
            }
        }
        Ok(acc)
    }

    /// The one bucketed read behind every chart and query: aggregates per bucket of
    /// `q.width_ms` (aligned to multiples of the width since the epoch) over
    /// `[q.from_ms, q.to_ms]`, only non-empty buckets, ascending, as the query planner
    /// plans it ([`planner::plan`]: rollups or raw points, the limits). Costs two `ZRANGE`s
    /// and a `ZCOUNT` to plan, then the plan's reads; rollup chunks run concurrently on
    /// the multiplexed connection.
    ///
    /// Fails when Redis does ([`StoreError::Unavailable`]), and with
    /// [`StoreError::InvalidArgument`] carrying the planner's [`Refusal`] text for a read
    /// past a limit or a width `<= 0`.
    pub async fn series(&self, q: SeriesQuery) -> Result<Vec<Bucket>, StoreError> {
        let refused = |r: Refusal| StoreError::InvalidArgument(r.to_string());
        if q.width_ms <= 0 {
            return Err(refused(Refusal::BadWidth(q.width_ms)));
        }
        let Some(bounds) = self.time_bounds().await? else {
            return Ok(Vec::new());
        };
        let Some((from, to)) = planner::clamp(&q, bounds) else {
            return Ok(Vec::new());
        };
        let points = self.count_range(from, to).await?;
        let width = q.width_ms;
        let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
        let mut add = |start: i64, b: &Bucket, last_ms: i64| {
            out.entry(start)
                .or_insert_with(|| Acc::empty(start))
                .merge(b, last_ms);
        };
        match planner::plan(&q, bounds, points).map_err(refused)? {
            Plan::Empty => {}
            Plan::Raw { from_ms, to_ms } => {
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
                            planner::floor_to(p.average.taken_at_ms, width),
                            &acc.bucket,
                            acc.last_ms,
                        );
                    }
                    match page.into_iter().last() {
                        Some(p) if full => after = Some(p.cursor),
                        _ => break,
                    }
                }
            }
            Plan::Rollups(chunks) => {
                let chunks = chunks
                    .into_iter()
                    .map(|reads| self.read_chunk(reads, width));
                for (start, bucket, last_ms) in try_join_all(chunks).await?.into_iter().flatten() {
                    add(start, &bucket, last_ms);
                }
            }
        }
        Ok(out
            .into_values()
            .filter(|a| a.bucket.count > 0)
            .map(|a| a.bucket)
            .collect())
    }

    /// The reads of one chunk of a plan: `(output bucket, aggregate, its last_ms)`.
    async fn read_chunk(
        &self,
        reads: Vec<Read>,
        width: i64,
    ) -> Result<Vec<(i64, Bucket, i64)>, StoreError> {
        let mut out = Vec::new();
        for read in reads {
            match read {
                Read::Rollups { level, lo, hi } => {
                    for (b, last_ms) in self.rollups(level, lo, hi).await? {
                        out.push((planner::floor_to(b.start_ms, width), b, last_ms));
                    }
                }
                Read::Exact {
                    start_ms,
                    from_ms,
                    to_ms,
                } => {
                    let acc = self.aggregate_exact(from_ms, to_ms).await?;
                    if acc.bucket.count > 0 {
                        out.push((start_ms, acc.bucket, acc.last_ms));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Chart buckets of `bucket_ms` over `[from_ms, to_ms]`: [`Store::series`] with
    /// [`planner::Exactness::Chart`] (widths of 10 s or more that no rollup level divides
    /// are approximated within one rollup step at bucket edges; widths under 10 s are
    /// exact up to [`planner::SUB_ROLLUP_RAW_LIMIT`] points, refused past it).
    pub async fn buckets(
        &self,
        from_ms: i64,
        to_ms: i64,
        bucket_ms: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        self.series(SeriesQuery {
            from_ms,
            to_ms,
            width_ms: bucket_ms,
            exactness: planner::Exactness::Chart,
        })
        .await
    }
}
