//! Connections: a small pool of them, one call on a connection (sent again on a new one if a
//! pooled connection turns out closed), and what a failed call means ("not applied", or "may
//! have been applied").

use super::topology::Conn;
use super::RedisStore;
use crate::store::StoreError;
use ::redis::{ConnectionLike, RedisError, RedisResult};
use std::time::{Duration, Instant};

/// A pooled connection, when it was last used, and the master generation it was opened at
/// (Sentinel: one of an older generation goes to a replaced master).
pub(super) struct Idle {
    connection: Conn,
    since: Instant,
    generation: u64,
}

impl RedisStore {
    /// A pooled connection idle this long is checked with `PING` before use.
    const IDLE_CHECK: Duration = Duration::from_secs(1);

    /// On a cluster, how many times redis-rs' client may send a call again (a redirection, a
    /// failover, `TRYAGAIN`), and the longest it waits between two sends.
    pub(super) const CLUSTER_RETRIES: u32 = 3;
    pub(super) const CLUSTER_RETRY_WAIT_MS: u64 = 200;

    pub(super) fn idle_lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        crate::locks::lock_std(&self.idle)
    }

    /// A new connection with the timeouts set.
    pub(super) fn connect(&self) -> Result<Conn, StoreError> {
        let unavailable = |error: RedisError| {
            let reason = if error.is_timeout() {
                format!("no answer within {:?}", self.connect_timeout)
            } else {
                self.redact(&error.to_string())
            };
            StoreError::Unavailable(format!(
                "cannot connect to Redis at {}: {reason}",
                self.target
            ))
        };
        let noauth = |error: &RedisError| {
            error.code() == Some("NOAUTH") || error.to_string().contains("NOAUTH")
        };
        let mut connection = match self.open() {
            Ok(connection) => connection,
            Err(error) if noauth(&error) => return Err(self.needs_auth()),
            Err(error) => return Err(unavailable(error)),
        };
        if connection.is_cluster() {
            // The cluster client read the slots from a node already: it answers.
            return Ok(connection);
        }
        // Without credentials the connection opens but nothing works: say so here.
        match ::redis::cmd("PING").query::<String>(connection.as_dyn()) {
            Ok(_) => Ok(connection),
            Err(error) if noauth(&error) => Err(self.needs_auth()),
            Err(error) => Err(unavailable(error)),
        }
    }

    fn needs_auth(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "Redis at {} requires authentication: put the user and password in the URL \
                 (redis://user:password@host:port)",
            self.target
        ))
    }

    /// A connection from the pool (checked with `PING` if idle a while) or a new one, and
    /// whether it came from the pool.
    fn checkout(&self) -> Result<(Conn, bool), StoreError> {
        loop {
            let idle = self.idle_lock().pop();
            let Some(Idle {
                mut connection,
                since,
                generation,
            }) = idle
            else {
                return Ok((self.connect()?, false));
            };
            if generation != self.master_generation() {
                // To a master replaced since: dropped.
                continue;
            }
            // A cluster connection reconnects to its nodes by itself.
            if since.elapsed() < Self::IDLE_CHECK || connection.is_cluster() {
                return Ok((connection, true));
            }
            match ::redis::cmd("PING").query::<String>(connection.as_dyn()) {
                Ok(_) => return Ok((connection, true)),
                Err(error) if error.is_timeout() => {
                    return Err(self.call_error("PING", &error, false));
                }
                Err(error) => {
                    // Closed (a restart?): the other idle ones are likely closed too.
                    log::debug!(
                        "quota: a pooled Redis connection to {} failed PING ({}); reconnecting",
                        self.target,
                        self.redact(&error.to_string())
                    );
                    self.idle_lock().clear();
                }
            }
        }
    }

    /// Pools `connection`, checked out at master `generation`, unless the master changed.
    fn checkin(&self, connection: Conn, generation: u64) {
        if generation != self.master_generation() {
            return;
        }
        let mut idle = self.idle_lock();
        if idle.len() < Self::MAX_IDLE {
            idle.push(Idle {
                connection,
                since: Instant::now(),
                generation,
            });
        }
    }

    /// Runs `op` on a connection. If `resendable` (the call counts once however often it is
    /// sent) and a pooled connection turns out closed, or the server answers that it is a
    /// replica now (`READONLY`: a failover; nothing was written), sends it again on a new
    /// connection (to the new master, with Sentinel).
    pub(super) fn call<T>(
        &self,
        what: &str,
        resendable: bool,
        op: impl Fn(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.follow_master();
        // Read before the checkout: a connection to a master replaced since is not pooled.
        let generation = self.master_generation();
        // Nothing was sent until the checkout succeeds: its errors say "not applied".
        let (mut connection, pooled) = self.checkout()?;
        let mut result = op(connection.as_dyn());
        let mut resent = false;
        if let Err(error) = &result {
            let dropped = pooled && error.is_connection_dropped() && !error.is_timeout();
            // Redis 6 and older report a script's write on a replica as an `ERR` naming it.
            let replica =
                error.code() == Some("READONLY") || error.to_string().contains("-READONLY");
            if resendable && (dropped || replica) {
                log::debug!(
                    "quota: Redis connection to {} lost during {what} ({}); sending it again",
                    self.target,
                    self.redact(&error.to_string())
                );
                self.idle_lock().clear();
                // The first send may have been applied: a failed reconnect must not read as
                // `Unavailable` (not applied).
                connection = self.connect().map_err(|error| {
                    StoreError::Io(format!(
                        "the connection to Redis at {} was lost during {what}, which may have \
                         been applied (a retry of the same call counts once), and reconnecting \
                         failed: {error}",
                        self.target
                    ))
                })?;
                result = op(connection.as_dyn());
                resent = true;
            }
        }
        match result {
            Ok(value) => {
                self.checkin(connection, generation);
                Ok(value)
            }
            Err(error) => {
                // The connection is dropped here; a closed one means the idle ones may be too.
                if error.is_connection_dropped() || error.code() == Some("READONLY") {
                    self.idle_lock().clear();
                }
                let error = self.call_error(what, &error, resendable);
                Err(if resent {
                    self.after_sending(what, error)
                } else {
                    error
                })
            }
        }
    }

    /// `error`, from a call part of which may have been applied already (a script that ran,
    /// a first send whose reply was lost): never an error that says nothing was applied.
    pub(super) fn after_sending(&self, what: &str, error: StoreError) -> StoreError {
        if error.maybe_applied() {
            return error;
        }
        StoreError::Io(format!(
            "{what} on Redis at {} failed after part of it was applied, so it may have been \
             (a retry of the same call counts once): {error}",
            self.target
        ))
    }

    pub(super) fn call_error(
        &self,
        what: &str,
        error: &RedisError,
        resendable: bool,
    ) -> StoreError {
        let at = &self.target;
        match error.code() {
            Some("QUOTACORRUPT") => {
                let detail = error.detail().unwrap_or("bad stored data");
                return StoreError::Corrupt(format!(
                    "Redis at {at}: {}; nothing was changed",
                    self.redact(detail)
                ));
            }
            Some("WRONGTYPE") => {
                return StoreError::Corrupt(format!(
                    "Redis at {at}: {what}: a key holds the wrong kind of value ({})",
                    self.redact(&error.to_string())
                ));
            }
            _ => {}
        }
        let applied = if resendable {
            "it may have been applied: a retry of the same call counts once"
        } else {
            "it may have been applied"
        };
        if error.is_timeout() {
            StoreError::Io(format!(
                "Redis at {at} did not answer {what} within {:?} ({applied})",
                self.response_timeout
            ))
        } else if error.is_io_error() || error.is_connection_dropped() {
            StoreError::Io(format!(
                "the connection to Redis at {at} failed during {what}: {} ({applied})",
                self.redact(&error.to_string())
            ))
        } else {
            StoreError::Io(format!(
                "Redis at {at} refused {what}: {}",
                self.redact(&error.to_string())
            ))
        }
    }
}
