//! What a chart can plot: the metrics, and how one bucket of history becomes one value.
//!
//! Shared by the JSON datasource (`/grafana`) and the Prometheus subset (`/prom`), so a
//! number means the same thing on both paths; which buckets are read, and from what, is
//! the store's query planner's business (`store::planner`). Everything here is pure: it
//! turns the store's per-bucket aggregates ([`Bucket`]) into values and never touches
//! Redis.

use std::fmt;

use crate::store::Bucket;

/// A plottable series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// The round averages (the value the cluster agreed on each round).
    Average,
    /// Readings per round (how many sensors contributed to an average).
    Samples,
    /// Rounds completed per bucket; gaps in it are outages.
    Rounds,
}

/// How the averages that fall into one bucket are reduced to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregation {
    /// Arithmetic mean over the rounds in the bucket.
    Avg,
    /// Smallest value in the bucket.
    Min,
    /// Largest value in the bucket.
    Max,
    /// Value of the latest round in the bucket.
    Last,
    /// Sum over the bucket (e.g. all readings taken).
    Sum,
    /// Number of rounds in the bucket.
    Count,
}

/// Scale applied to counts so charts of different bucket widths compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rate {
    /// The raw count per bucket.
    PerBucket,
    /// Count normalised to one minute: `count * 60 s / bucket width`.
    PerMinute,
}

impl Metric {
    /// Every metric, in the order the query editor lists them.
    pub const ALL: [Metric; 3] = [Metric::Average, Metric::Samples, Metric::Rounds];

    /// The name Grafana users type (`average`, `samples`, `rounds`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Average => "average",
            Metric::Samples => "samples",
            Metric::Rounds => "rounds",
        }
    }

    /// One-line description for pickers and Prometheus `HELP`.
    pub fn help(self) -> &'static str {
        match self {
            Metric::Average => "Round averages agreed by the sensor cluster",
            Metric::Samples => "Sensor readings that went into each round average",
            Metric::Rounds => "Rounds completed; a gap means no average was stored",
        }
    }

    /// Parses a metric name; `None` for anything else.
    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name.trim())
    }

    /// The aggregations this metric supports; the first is the default.
    ///
    /// The store keeps min/max/last only for the average value, so readings per round
    /// offer the mean and the sum, and rounds are a count.
    pub fn aggregations(self) -> &'static [Aggregation] {
        match self {
            Metric::Average => &[
                Aggregation::Avg,
                Aggregation::Min,
                Aggregation::Max,
                Aggregation::Last,
            ],
            Metric::Samples => &[Aggregation::Avg, Aggregation::Sum],
            Metric::Rounds => &[Aggregation::Count],
        }
    }

    /// The default aggregation of this metric.
    pub fn default_aggregation(self) -> Aggregation {
        self.aggregations()[0]
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Aggregation {
    /// The name used in payloads (`avg`, `min`, `max`, `last`, `sum`, `count`).
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Avg => "avg",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
            Aggregation::Last => "last",
            Aggregation::Sum => "sum",
            Aggregation::Count => "count",
        }
    }

    /// Parses an aggregation name (case-insensitive; `mean`/`average` mean `avg`).
    pub fn parse(name: &str) -> Option<Aggregation> {
        match name.trim().to_ascii_lowercase().as_str() {
            "avg" | "mean" | "average" => Some(Aggregation::Avg),
            "min" => Some(Aggregation::Min),
            "max" => Some(Aggregation::Max),
            "last" => Some(Aggregation::Last),
            "sum" => Some(Aggregation::Sum),
            "count" => Some(Aggregation::Count),
            _ => None,
        }
    }
}

impl Rate {
    /// Parses `per_bucket` / `per_minute` (also `bucket` / `minute`).
    pub fn parse(name: &str) -> Option<Rate> {
        match name.trim().to_ascii_lowercase().as_str() {
            "per_bucket" | "bucket" => Some(Rate::PerBucket),
            "per_minute" | "minute" => Some(Rate::PerMinute),
            _ => None,
        }
    }

    /// The payload name of this rate.
    pub fn name(self) -> &'static str {
        match self {
            Rate::PerBucket => "per_bucket",
            Rate::PerMinute => "per_minute",
        }
    }
}

/// A fully specified series: metric, reduction and scale. Build it with [`SeriesSpec::new`],
/// which rejects combinations the store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeriesSpec {
    /// What is plotted.
    pub metric: Metric,
    /// How a bucket is reduced.
    pub aggregation: Aggregation,
    /// Scale of counts (only meaningful for [`Metric::Rounds`]).
    pub rate: Rate,
}

impl SeriesSpec {
    /// Checks that `aggregation` (default: the metric's default) is supported by `metric`.
    ///
    /// Fails with a message fit to show a Grafana user.
    pub fn new(
        metric: Metric,
        aggregation: Option<Aggregation>,
        rate: Option<Rate>,
    ) -> Result<SeriesSpec, String> {
        let aggregation = aggregation.unwrap_or(metric.default_aggregation());
        if !metric.aggregations().contains(&aggregation) {
            let supported: Vec<&str> = metric.aggregations().iter().map(|a| a.name()).collect();
            return Err(format!(
                "metric `{metric}` does not support aggregation `{}` (supported: {})",
                aggregation.name(),
                supported.join(", ")
            ));
        }
        Ok(SeriesSpec {
            metric,
            aggregation,
            rate: rate.unwrap_or(Rate::PerBucket),
        })
    }

    /// The series name shown in legends: the metric, plus what differs from the default.
    pub fn display_name(&self) -> String {
        let mut name = self.metric.name().to_string();
        if self.aggregation != self.metric.default_aggregation() {
            name.push_str(&format!(" ({})", self.aggregation.name()));
        }
        if self.metric == Metric::Rounds && self.rate == Rate::PerMinute {
            name.push_str(" per minute");
        }
        name
    }

    /// The value of one non-empty bucket of width `width_ms`; `None` if the bucket is empty.
    pub fn value(&self, bucket: &Bucket, width_ms: i64) -> Option<f64> {
        if bucket.count == 0 {
            return None;
        }
        let count = bucket.count as f64;
        let value = match (self.metric, self.aggregation) {
            (Metric::Average, Aggregation::Avg) => bucket.sum / count,
            (Metric::Average, Aggregation::Min) => bucket.min,
            (Metric::Average, Aggregation::Max) => bucket.max,
            (Metric::Average, Aggregation::Last) => bucket.last,
            (Metric::Samples, Aggregation::Avg) => bucket.samples_sum as f64 / count,
            (Metric::Samples, Aggregation::Sum) => bucket.samples_sum as f64,
            (Metric::Rounds, _) => match self.rate {
                Rate::PerBucket => count,
                Rate::PerMinute => count * 60_000.0 / width_ms.max(1) as f64,
            },
            // `new` rejects every other pair; answer "no value" rather than a wrong one.
            _ => return None,
        };
        value.is_finite().then_some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(count: u64, sum: f64, min: f64, max: f64, last: f64, samples_sum: u64) -> Bucket {
        Bucket {
            start_ms: 0,
            count,
            sum,
            min,
            max,
            last,
            samples_sum,
        }
    }

    #[test]
    fn average_aggregations() {
        let b = bucket(4, 10.0, 1.0, 4.0, 2.0, 12);
        let v = |a| {
            SeriesSpec::new(Metric::Average, Some(a), None)
                .unwrap()
                .value(&b, 1000)
        };
        assert_eq!(v(Aggregation::Avg), Some(2.5));
        assert_eq!(v(Aggregation::Min), Some(1.0));
        assert_eq!(v(Aggregation::Max), Some(4.0));
        assert_eq!(v(Aggregation::Last), Some(2.0));
    }

    #[test]
    fn samples_and_rounds() {
        let b = bucket(4, 10.0, 1.0, 4.0, 2.0, 12);
        let s = SeriesSpec::new(Metric::Samples, None, None).unwrap();
        assert_eq!(s.value(&b, 1000), Some(3.0));
        let s = SeriesSpec::new(Metric::Samples, Some(Aggregation::Sum), None).unwrap();
        assert_eq!(s.value(&b, 1000), Some(12.0));
        let r = SeriesSpec::new(Metric::Rounds, None, None).unwrap();
        assert_eq!(r.value(&b, 30_000), Some(4.0));
        let r = SeriesSpec::new(Metric::Rounds, None, Some(Rate::PerMinute)).unwrap();
        assert_eq!(r.value(&b, 30_000), Some(8.0));
        assert_eq!(r.display_name(), "rounds per minute");
    }

    #[test]
    fn unsupported_pairs_are_rejected_with_a_useful_message() {
        let err = SeriesSpec::new(Metric::Samples, Some(Aggregation::Max), None).unwrap_err();
        assert!(err.contains("samples") && err.contains("avg, sum"), "{err}");
    }

    #[test]
    fn empty_bucket_has_no_value() {
        let s = SeriesSpec::new(Metric::Average, None, None).unwrap();
        assert_eq!(s.value(&bucket(0, 0.0, 0.0, 0.0, 0.0, 0), 1000), None);
    }

    #[test]
    fn names_round_trip() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.name()), Some(m));
            for a in m.aggregations() {
                assert_eq!(Aggregation::parse(a.name()), Some(*a));
            }
        }
        assert_eq!(Aggregation::parse("MEAN"), Some(Aggregation::Avg));
        assert_eq!(Metric::parse("nope"), None);
    }
}
