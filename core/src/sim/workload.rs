//! What the simulated workers do: the workload parameters and their validation.

use super::stream::{Bursts, CallSize, OpStream};
use crate::config::TrackerConfig;
use crate::text::Float;

/// The workload of one simulation run. Build one with [`Workload::even`] and change the fields;
/// [`validate`](Self::validate) (also run by [`stream`](Self::stream)) checks them.
///
/// ```
/// use quota_core::sim::{Bursts, CallSize, Workload};
/// use quota_core::TrackerConfig;
///
/// let config = TrackerConfig::defaults();
/// let mut workload = Workload::even(&config);
/// workload.workers = 16;
/// workload.size = CallSize { min: 1, max: 5 };
/// workload.bursts = Bursts { chance: 0.01, length: 20 };
/// workload.validate()?;
/// workload.workers = 0;
/// assert!(workload.validate().unwrap_err().to_string().contains("workers"));
/// # Ok::<(), quota_core::sim::WorkloadError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Concurrent workers, 1 to [`MAX_WORKERS`](Self::MAX_WORKERS).
    pub workers: usize,
    /// Calls per second per worker, 1 to [`MAX_RATE`](Self::MAX_RATE), for drivers that pace
    /// their workers (the browser); the native driver runs as fast as it can.
    pub calls_per_second: u32,
    /// Which services the calls go to, with relative weights. Services of the config that are
    /// not listed get no calls.
    pub mix: Vec<Share>,
    /// How many units each call records.
    pub size: CallSize,
    /// Occasional runs of back-to-back calls to one service.
    pub bursts: Bursts,
    /// The seed: the same seed gives every worker the same calls.
    pub seed: u64,
}

/// One service's share of the calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The service's name, as in the config.
    pub service: String,
    /// Its weight relative to the other shares; 0 sends it nothing.
    pub weight: u32,
}

/// A workload parameter out of range; the message names the parameter and its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workload: {0}")]
pub struct WorkloadError(pub String);

impl Workload {
    /// The most workers a workload may have.
    pub const MAX_WORKERS: usize = 64;
    /// The highest rate per worker, in calls per second.
    pub const MAX_RATE: u32 = 1_000;
    /// The longest burst, in calls.
    pub const MAX_BURST: u32 = 10_000;

    /// Every service of `config` with weight 1; 4 workers at 2 calls per second, 1 unit per
    /// call, no bursts, seed 7.
    pub fn even(config: &TrackerConfig) -> Self {
        Workload {
            workers: 4,
            calls_per_second: 2,
            mix: config
                .services
                .iter()
                .map(|service| Share {
                    service: service.name.clone(),
                    weight: 1,
                })
                .collect(),
            size: CallSize { min: 1, max: 1 },
            bursts: Bursts::NONE,
            seed: 7,
        }
    }

    /// Checks every parameter on its own (see [`stream`](Self::stream) for the check against a
    /// config).
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let invalid = |message: String| Err(WorkloadError(message));
        if !(1..=Self::MAX_WORKERS).contains(&self.workers) {
            return invalid(format!(
                "workers must be in 1..={} (got {})",
                Self::MAX_WORKERS,
                self.workers
            ));
        }
        if !(1..=Self::MAX_RATE).contains(&self.calls_per_second) {
            return invalid(format!(
                "calls_per_second must be in 1..={} (got {})",
                Self::MAX_RATE,
                self.calls_per_second
            ));
        }
        for (index, share) in self.mix.iter().enumerate() {
            if self.mix[..index].iter().any(|s| s.service == share.service) {
                return invalid(format!("mix lists service {:?} twice", share.service));
            }
        }
        if self.mix.iter().all(|share| share.weight == 0) {
            return invalid("mix needs at least one service with a weight above 0".to_owned());
        }
        if self.size.min == 0 || self.size.min > self.size.max {
            return invalid(format!(
                "size must satisfy 1 <= min <= max (got min {}, max {})",
                self.size.min, self.size.max
            ));
        }
        if !(0.0..=1.0).contains(&self.bursts.chance) {
            return invalid(format!(
                "bursts.chance must be in [0, 1] (got {})",
                Float(self.bursts.chance)
            ));
        }
        if self.bursts.length > Self::MAX_BURST {
            return invalid(format!(
                "bursts.length must be at most {} (got {})",
                Self::MAX_BURST,
                self.bursts.length
            ));
        }
        Ok(())
    }

    /// Worker `worker`'s calls against `config`: endless, and the same for the same seed.
    /// Each [`Op::service`](super::Op::service) indexes `config.services`.
    ///
    /// Errors: an invalid parameter, a worker index out of range, or a mix naming a service the
    /// config does not have.
    pub fn stream(&self, config: &TrackerConfig, worker: usize) -> Result<OpStream, WorkloadError> {
        self.validate()?;
        if worker >= self.workers {
            return Err(WorkloadError(format!(
                "worker index {worker} out of range for {} workers",
                self.workers
            )));
        }
        let mut weights = vec![0u32; config.services.len()];
        for share in &self.mix {
            let position = config
                .services
                .iter()
                .position(|service| service.name == share.service)
                .ok_or_else(|| {
                    WorkloadError(format!(
                        "mix names service {:?}, which the config does not have",
                        share.service
                    ))
                })?;
            weights[position] = share.weight;
        }
        Ok(OpStream::new(
            worker_seed(self.seed, worker),
            &weights,
            self.size,
            self.bursts,
        ))
    }
}

/// Each worker's seed: distinct per worker, fixed per `(seed, worker)`.
fn worker_seed(seed: u64, worker: usize) -> u64 {
    // The golden-ratio increment of SplitMix64 spreads neighbouring workers apart.
    seed ^ (worker as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceConfig;
    use crate::window::Period;

    fn config() -> TrackerConfig {
        TrackerConfig::defaults()
    }

    #[test]
    fn even_workload_is_valid() {
        let workload = Workload::even(&config());
        workload.validate().unwrap();
        assert_eq!(workload.mix.len(), 3);
    }

    #[test]
    fn out_of_range_parameters_are_named() {
        let base = || Workload::even(&config());
        let cases: Vec<(Workload, &[&str])> = vec![
            (
                Workload {
                    workers: 0,
                    ..base()
                },
                &["workers", "0"],
            ),
            (
                Workload {
                    workers: 65,
                    ..base()
                },
                &["workers", "65"],
            ),
            (
                Workload {
                    calls_per_second: 0,
                    ..base()
                },
                &["calls_per_second", "0"],
            ),
            (
                Workload {
                    calls_per_second: 1_001,
                    ..base()
                },
                &["calls_per_second", "1001"],
            ),
            (
                Workload {
                    mix: vec![Share {
                        service: "tiingo".into(),
                        weight: 0,
                    }],
                    ..base()
                },
                &["mix", "weight"],
            ),
            (
                Workload {
                    mix: vec![
                        Share {
                            service: "tiingo".into(),
                            weight: 1,
                        },
                        Share {
                            service: "tiingo".into(),
                            weight: 2,
                        },
                    ],
                    ..base()
                },
                &["tiingo", "twice"],
            ),
            (
                Workload {
                    size: CallSize { min: 0, max: 3 },
                    ..base()
                },
                &["size", "min 0"],
            ),
            (
                Workload {
                    size: CallSize { min: 4, max: 3 },
                    ..base()
                },
                &["size", "min 4", "max 3"],
            ),
            (
                Workload {
                    bursts: Bursts {
                        chance: 1.5,
                        length: 3,
                    },
                    ..base()
                },
                &["bursts.chance", "1.5"],
            ),
            (
                Workload {
                    bursts: Bursts {
                        chance: f64::NAN,
                        length: 3,
                    },
                    ..base()
                },
                &["bursts.chance", "NaN"],
            ),
            (
                Workload {
                    bursts: Bursts {
                        chance: 0.5,
                        length: 10_001,
                    },
                    ..base()
                },
                &["bursts.length", "10001"],
            ),
        ];
        for (workload, words) in cases {
            let text = workload.validate().unwrap_err().to_string();
            for word in words {
                assert!(text.contains(word), "{text:?} should mention {word:?}");
            }
        }
    }

    #[test]
    fn stream_checks_the_mix_and_worker_against_the_config() {
        let workload = Workload::even(&config());
        let other = TrackerConfig::new([ServiceConfig::new("search", 10, Period::Minute)]);
        let error = workload.stream(&other, 0).unwrap_err();
        assert!(error.to_string().contains("\"tiingo\""), "{error}");
        let error = workload.stream(&config(), 4).unwrap_err();
        assert!(error.to_string().contains("worker index 4"), "{error}");
    }

    #[test]
    fn worker_seeds_differ() {
        let seeds: Vec<u64> = (0..64).map(|worker| worker_seed(7, worker)).collect();
        let mut unique = seeds.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), seeds.len());
    }
}
