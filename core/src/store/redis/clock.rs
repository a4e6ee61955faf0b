//! The Redis server's clock, read locally: [`RedisStore::server_clock`] and [`RedisClock`],
//! this host's monotonic clock plus an offset measured against the server's `TIME`.

use super::RedisStore;
use crate::clock::Clock;
use crate::secrets::Secrets;
use crate::store::StoreError;
use ::redis::{Client, Connection, RedisError};
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The server's clock: see [`RedisStore::server_clock`].
impl RedisStore {
    /// A [`Clock`] that reads the Redis server's time (`TIME`, the clock the scripts use for
    /// expiries) instead of this host's: give it to every tracker on every host and they all
    /// pick windows from one clock, so a host whose own clock is off no longer admits into a
    /// window the others have left (beyond the measurement error below).
    ///
    /// ```no_run
    /// use quota_core::{Period, QuotaTracker, RedisStore, ServiceConfig, TrackerConfig};
    /// let config = TrackerConfig::new([ServiceConfig::new("llm", 10_000, Period::Day)]);
    /// let store = RedisStore::new("redis://redis.internal:6379")?;
    /// let tracker = QuotaTracker::builder(config)
    ///     .clock(store.server_clock())
    ///     .store(store)
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// It does not ask Redis at every reading: it measures the offset between this host's
    /// monotonic clock and the server's `TIME` (the server's time against the midpoint of the
    /// round trip, the tightest of three round trips), and reads the local monotonic clock plus
    /// that offset. What remains is the measurement error, at most half the round trip
    /// ([`error`](RedisClock::error); well under a millisecond on a local network), plus the
    /// local clock's drift since the last measurement.
    ///
    /// The first measurement happens here (waiting at most this store's timeouts); if it
    /// fails, the clock reads this host's wall clock until a measurement succeeds. After that
    /// the offset is measured again at most every [`RedisClock::DEFAULT_REFRESH`] (see
    /// [`refresh_every`](RedisClock::refresh_every)), by whichever thread reads the clock and
    /// finds it stale; other threads never wait for a measurement in flight (they use the
    /// last offset), and a failed measurement keeps the last offset. So while Redis is
    /// unreachable the clock goes on (one reading per refresh interval waits up to the
    /// timeouts), and it never panics.
    ///
    /// The clock has its own connection, with the store's URL, credentials, TLS settings and
    /// timeouts as they are now; it stays usable after the store is moved into a tracker.
    ///
    /// It reads one server, which [`node`](RedisClock::node) names: on a
    /// [cluster](Self::cluster) the first node given, on [Sentinel](Self::sentinel) the
    /// master they named when the clock was made (it goes on reading that server after a
    /// failover). The scripts read the clock of the node that holds each service's keys:
    /// keep the nodes' clocks in sync (NTP).
    pub fn server_clock(&self) -> RedisClock {
        let (client, target) = self.clock_node();
        let shared = ClockShared {
            client,
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            target,
            secrets: self.secrets.clone(),
            base: Instant::now(),
            connection: Mutex::new(None),
            // Until the first measurement: this host's wall clock (the monotonic clock is at 0).
            offset_us: AtomicI64::new(wall_us()),
            error_us: AtomicU64::new(UNMEASURED),
            wall_offset_us: AtomicI64::new(0),
            last_attempt_us: AtomicU64::new(0),
            refresh_us: AtomicU64::new(duration_us(RedisClock::DEFAULT_REFRESH)),
            last_ms: AtomicU64::new(0),
        };
        let clock = RedisClock {
            shared: Arc::new(shared),
        };
        if let Err(error) = clock.refresh() {
            log::warn!(
                "quota: could not read the clock of Redis at {}: {error}; using this host's \
                 clock until it answers",
                clock.shared.target
            );
        }
        clock
    }
}

/// The Redis server's clock, read locally: this host's monotonic clock plus an offset measured
/// against the server's `TIME`. Made by [`RedisStore::server_clock`], which describes it.
/// Clones share one offset and one connection.
///
/// Its readings never go backwards: a new measurement that puts the server a little behind
/// the last one holds the clock still until it catches up (except the first measurement,
/// which replaces this host's wall clock).
#[derive(Clone)]
pub struct RedisClock {
    shared: Arc<ClockShared>,
}

/// [`error_us`](ClockShared::error_us) before the first measurement.
const UNMEASURED: u64 = u64::MAX;

struct ClockShared {
    /// The node read; `None` if the Sentinels named no master (the wall clock is read).
    client: Option<Client>,
    connect_timeout: Duration,
    response_timeout: Duration,
    target: String,
    secrets: Secrets,
    /// The origin of the local monotonic clock: the offsets are added to µs since then.
    base: Instant,
    /// The measuring connection; whoever holds the lock is measuring (others never wait).
    connection: Mutex<Option<Connection>>,
    /// Server time (µs since the Unix epoch) minus local monotonic µs since `base`; this
    /// host's wall clock until the first measurement.
    offset_us: AtomicI64,
    /// Half the round trip of the measurement in use, µs; [`UNMEASURED`] before one.
    error_us: AtomicU64,
    /// Server time minus this host's wall clock at the last measurement, µs.
    wall_offset_us: AtomicI64,
    /// Local monotonic µs of the last measurement attempt.
    last_attempt_us: AtomicU64,
    /// Measure again once this many µs have passed since the last attempt.
    refresh_us: AtomicU64,
    /// The latest reading given out (readings never go backwards).
    last_ms: AtomicU64,
}

/// One `TIME` round trip.
#[derive(Clone, Copy)]
struct Sample {
    round_trip_us: u64,
    offset_us: i64,
    wall_offset_us: i64,
}

impl RedisClock {
    /// How often the offset is measured again by default.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
    /// `TIME` round trips per measurement; the tightest one is kept.
    const SAMPLES: usize = 3;

    /// Measures the offset again once `every` has passed since the last attempt (default
    /// [`DEFAULT_REFRESH`](Self::DEFAULT_REFRESH); at least 1 ms). Applies to every clone.
    pub fn refresh_every(self, every: Duration) -> Self {
        self.shared
            .refresh_us
            .store(duration_us(every).max(1000), Ordering::Relaxed);
        self
    }

    /// Measures the offset now, waiting for a measurement in flight on another thread first
    /// (and at most the store's timeouts for its own). A failure keeps the last offset.
    ///
    /// Errors: [`StoreError::Unavailable`] if Redis cannot be reached, [`StoreError::Io`] if
    /// it does not answer `TIME` in time or answers something else.
    pub fn refresh(&self) -> Result<(), StoreError> {
        let mut connection = crate::locks::lock_std(&self.shared.connection);
        self.measure(&mut connection)
    }

    /// The server this clock reads, `host:port` (see [`RedisStore::server_clock`]).
    pub fn node(&self) -> &str {
        &self.shared.target
    }

    /// The error bound of the offset in use: half the round trip of its measurement. `None`
    /// until a measurement succeeded (the clock is this host's wall clock until then).
    pub fn error(&self) -> Option<Duration> {
        match self.shared.error_us.load(Ordering::Relaxed) {
            UNMEASURED => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// The server's clock minus this host's wall clock, in ms, at the last successful
    /// measurement (positive: the server is ahead). `None` until a measurement succeeded.
    pub fn offset_ms(&self) -> Option<i64> {
        self.error()?;
        Some(self.shared.wall_offset_us.load(Ordering::Relaxed) / 1000)
    }

    /// Local monotonic µs since `base`.
    fn mono_us(&self) -> u64 {
        duration_us(self.shared.base.elapsed())
    }

    /// Measures with the lock held: connects if needed, keeps the tightest of a few `TIME`
    /// round trips, and stores it; on failure drops the connection and keeps the last offset.
    fn measure(&self, connection: &mut Option<Connection>) -> Result<(), StoreError> {
        let shared = &*self.shared;
        shared
            .last_attempt_us
            .store(self.mono_us(), Ordering::Relaxed);
        let result = self.sample(connection);
        let sample = match result {
            Ok(sample) => sample,
            Err(error) => {
                *connection = None;
                return Err(error);
            }
        };
        let first = shared.error_us.load(Ordering::Relaxed) == UNMEASURED;
        shared.offset_us.store(sample.offset_us, Ordering::Relaxed);
        shared
            .wall_offset_us
            .store(sample.wall_offset_us, Ordering::Relaxed);
        shared
            .error_us
            .store(sample.round_trip_us.div_ceil(2), Ordering::Relaxed);
        if first {
            // The first measurement replaces this host's clock: it may step back.
            shared.last_ms.store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The tightest of [`SAMPLES`](Self::SAMPLES) round trips (fewer if one fails after the
    /// first).
    fn sample(&self, connection: &mut Option<Connection>) -> Result<Sample, StoreError> {
        let shared = &*self.shared;
        if connection.is_none() {
            *connection = Some(self.connect()?);
        }
        let Some(open) = connection.as_mut() else {
            return Err(StoreError::Unavailable("no connection".to_owned()));
        };
        let mut best: Option<Sample> = None;
        for _ in 0..Self::SAMPLES {
            let sent = self.mono_us();
            let reply = ::redis::cmd("TIME").query::<(u64, u64)>(open);
            let received = self.mono_us();
            let wall_received = wall_us();
            let (seconds, micros) = match reply {
                Ok(time) => time,
                Err(error) if best.is_none() => return Err(self.time_error(&error)),
                Err(_) => break,
            };
            let server_us = seconds
                .checked_mul(1_000_000)
                .and_then(|us| us.checked_add(micros))
                .and_then(|us| i64::try_from(us).ok())
                .ok_or_else(|| {
                    StoreError::Io(format!(
                        "Redis at {} answered TIME with {seconds} s {micros} µs",
                        shared.target
                    ))
                })?;
            let round_trip_us = received.saturating_sub(sent);
            // The server read its clock somewhere in the round trip: say in the middle.
            let middle = sent.saturating_add(round_trip_us / 2);
            let half = i64::try_from(round_trip_us / 2).unwrap_or(i64::MAX);
            let sample = Sample {
                round_trip_us,
                offset_us: server_us.saturating_sub(i64::try_from(middle).unwrap_or(i64::MAX)),
                wall_offset_us: server_us.saturating_sub(wall_received.saturating_sub(half)),
            };
            if best.is_none_or(|b| sample.round_trip_us < b.round_trip_us) {
                best = Some(sample);
            }
        }
        best.ok_or_else(|| StoreError::Io("no TIME sample".to_owned()))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let shared = &*self.shared;
        let Some(client) = &shared.client else {
            return Err(StoreError::Unavailable(format!(
                "cannot read the clock of Redis: {}",
                shared.target
            )));
        };
        let connection = client
            .get_connection_with_timeout(shared.connect_timeout)
            .map_err(|error| {
                let reason = if error.is_timeout() {
                    format!("no answer within {:?}", shared.connect_timeout)
                } else {
                    shared.secrets.redact(&error.to_string())
                };
                StoreError::Unavailable(format!(
                    "cannot connect to Redis at {} for its clock: {reason}",
                    shared.target
                ))
            })?;
        connection
            .set_read_timeout(Some(shared.response_timeout))
            .and_then(|()| connection.set_write_timeout(Some(shared.response_timeout)))
            .map_err(|error| self.time_error(&error))?;
        Ok(connection)
    }

    fn time_error(&self, error: &RedisError) -> StoreError {
        let shared = &*self.shared;
        if error.is_timeout() {
            StoreError::Io(format!(
                "Redis at {} did not answer TIME within {:?}",
                shared.target, shared.response_timeout
            ))
        } else {
            StoreError::Io(format!(
                "Redis at {} failed TIME: {}",
                shared.target,
                shared.secrets.redact(&error.to_string())
            ))
        }
    }

    /// Measures again if the last attempt is older than the refresh interval and no other
    /// thread is measuring (never waits for one that is).
    fn refresh_if_stale(&self, now_us: u64) {
        let shared = &*self.shared;
        let stale = |now_us: u64| {
            now_us.saturating_sub(shared.last_attempt_us.load(Ordering::Relaxed))
                >= shared.refresh_us.load(Ordering::Relaxed)
        };
        if !stale(now_us) {
            return;
        }
        let Some(mut connection) = crate::locks::try_lock_std(&shared.connection) else {
            return;
        };
        // Another thread may have measured between the look and the lock.
        if !stale(self.mono_us()) {
            return;
        }
        if let Err(error) = self.measure(&mut connection) {
            log::debug!(
                "quota: measuring the clock of Redis at {} failed ({error}); keeping the last \
                 offset",
                shared.target
            );
        }
    }
}

impl Clock for RedisClock {
    /// The server's time now, ms since the Unix epoch: the local monotonic clock plus the
    /// measured offset (measured again first if stale and no other thread is measuring).
    fn now_ms(&self) -> u64 {
        self.refresh_if_stale(self.mono_us());
        let shared = &*self.shared;
        let mono = i64::try_from(self.mono_us()).unwrap_or(i64::MAX);
        let us = mono.saturating_add(shared.offset_us.load(Ordering::Relaxed));
        let ms = u64::try_from(us.max(0) / 1000).unwrap_or(0);
        shared.last_ms.fetch_max(ms, Ordering::Relaxed).max(ms)
    }
}

impl fmt::Debug for RedisClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisClock")
            .field("target", &self.shared.target)
            .field("offset_ms", &self.offset_ms())
            .field("error", &self.error())
            .field(
                "refresh_every",
                &Duration::from_micros(self.shared.refresh_us.load(Ordering::Relaxed)),
            )
            .finish()
    }
}

/// This host's wall clock, µs since the Unix epoch (0 before it).
fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
        })
}

fn duration_us(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}
