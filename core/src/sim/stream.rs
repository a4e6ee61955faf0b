//! One worker's deterministic sequence of calls.

/// Units per call, drawn uniformly from `min..=max` (both at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSize {
    /// The smallest call.
    pub min: u64,
    /// The largest call.
    pub max: u64,
}

/// Bursts: after any call, with probability `chance`, `length` more calls to the same service
/// follow at once (marked [`Op::follows`](super::Op::follows)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bursts {
    /// Probability in `[0, 1]` that a call starts a burst.
    pub chance: f64,
    /// Extra calls in a burst, at most [`Workload::MAX_BURST`](super::Workload::MAX_BURST).
    pub length: u32,
}

impl Bursts {
    /// No bursts.
    pub const NONE: Bursts = Bursts {
        chance: 0.0,
        length: 0,
    };
}

/// One simulated call: record `count` units to the service at index `service` of the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Index into the config's services.
    pub service: usize,
    /// Units to record, at least 1.
    pub count: u64,
    /// Part of a burst: issue it right after the previous call, without waiting for the pace.
    pub follows: bool,
}

/// A worker's calls, from [`Workload::stream`](super::Workload::stream). Endless: take as many
/// as needed. Seeded with [`fastrand`], so the sequence is the same on every platform.
///
/// ```
/// use quota_core::sim::Workload;
/// use quota_core::TrackerConfig;
///
/// let config = TrackerConfig::defaults();
/// let workload = Workload::even(&config);
/// let first: Vec<_> = workload.stream(&config, 3)?.take(50).collect();
/// let again: Vec<_> = workload.stream(&config, 3)?.take(50).collect();
/// assert_eq!(first, again);
/// # Ok::<(), quota_core::sim::WorkloadError>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpStream {
    rng: fastrand::Rng,
    /// Running sums of the weights, in config order.
    cumulative: Vec<u64>,
    size: CallSize,
    bursts: Bursts,
    /// Calls of the current burst still to come, and their service.
    burst_left: u32,
    burst_service: usize,
}

impl OpStream {
    /// A stream over `weights` (config order, not all 0), already validated by the workload.
    pub(super) fn new(seed: u64, weights: &[u32], size: CallSize, bursts: Bursts) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &weight| {
                *sum += u64::from(weight);
                Some(*sum)
            })
            .collect();
        OpStream {
            rng: fastrand::Rng::with_seed(seed),
            cumulative,
            size,
            bursts,
            burst_left: 0,
            burst_service: 0,
        }
    }

    fn pick_service(&mut self) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let ticket = self.rng.u64(0..total);
        // The first service whose running sum passes the ticket; weight-0 services never do.
        self.cumulative.partition_point(|&sum| sum <= ticket)
    }

    fn pick_count(&mut self) -> u64 {
        self.rng.u64(self.size.min..=self.size.max)
    }
}

impl Iterator for OpStream {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        if self.burst_left > 0 {
            self.burst_left -= 1;
            let count = self.pick_count();
            return Some(Op {
                service: self.burst_service,
                count,
                follows: true,
            });
        }
        let service = self.pick_service();
        let count = self.pick_count();
        if self.bursts.length > 0 && self.rng.f64() < self.bursts.chance {
            self.burst_left = self.bursts.length;
            self.burst_service = service;
        }
        Some(Op {
            service,
            count,
            follows: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Share, Workload};
    use super::*;
    use crate::config::TrackerConfig;

    fn config() -> TrackerConfig {
        TrackerConfig::defaults()
    }

    fn ops(workload: &Workload, worker: usize, n: usize) -> Vec<Op> {
        workload
            .stream(&config(), worker)
            .unwrap()
            .take(n)
            .collect()
    }

    #[test]
    fn same_seed_same_ops_other_seed_other_ops() {
        let mut workload = Workload::even(&config());
        workload.size = CallSize { min: 1, max: 9 };
        workload.workers = 2;
        let a = ops(&workload, 0, 200);
        assert_eq!(a, ops(&workload, 0, 200));
        assert_ne!(a, ops(&workload, 1, 200), "workers get different streams");
        workload.seed = 8;
        assert_ne!(a, ops(&workload, 0, 200), "another seed, other ops");
    }

    #[test]
    fn weights_shape_the_mix_and_zero_weight_gets_nothing() {
        let mut workload = Workload::even(&config());
        workload.mix = vec![
            Share {
                service: "tiingo".into(),
                weight: 3,
            },
            Share {
                service: "finnhub".into(),
                weight: 1,
            },
            Share {
                service: "sendgrid".into(),
                weight: 0,
            },
        ];
        let mut per_service = [0usize; 3];
        for op in ops(&workload, 0, 40_000) {
            per_service[op.service] += 1;
        }
        assert_eq!(per_service[2], 0);
        let share = per_service[0] as f64 / 40_000.0;
        assert!((0.73..0.77).contains(&share), "tiingo got {share}");
    }

    #[test]
    fn sizes_stay_in_range_and_cover_it() {
        let mut workload = Workload::even(&config());
        workload.size = CallSize { min: 2, max: 5 };
        let sizes: Vec<u64> = ops(&workload, 0, 2_000).iter().map(|op| op.count).collect();
        assert!(sizes.iter().all(|size| (2..=5).contains(size)));
        for size in 2..=5 {
            assert!(sizes.contains(&size), "size {size} never drawn");
        }
    }

    #[test]
    fn bursts_repeat_one_service() {
        let mut workload = Workload::even(&config());
        workload.bursts = Bursts {
            chance: 0.1,
            length: 4,
        };
        let all = ops(&workload, 0, 5_000);
        let mut starts = 0;
        let mut i = 0;
        while i < all.len() {
            let op = all[i];
            assert!(!op.follows, "a burst has exactly `length` followers");
            let followers = all[i + 1..]
                .iter()
                .take_while(|next| next.follows)
                .collect::<Vec<_>>();
            if !followers.is_empty() {
                starts += 1;
                let complete = i + 1 + followers.len() < all.len();
                if complete {
                    assert_eq!(followers.len(), 4);
                }
                assert!(followers.iter().all(|next| next.service == op.service));
            }
            i += 1 + followers.len();
        }
        assert!(starts > 50, "only {starts} bursts in 5000 calls at 10%");
    }

    #[test]
    fn no_bursts_means_no_followers() {
        let workload = Workload::even(&config());
        assert!(ops(&workload, 0, 1_000).iter().all(|op| !op.follows));
    }
}
