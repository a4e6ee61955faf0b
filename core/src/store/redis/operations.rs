//! The [`Store`] protocol on Redis: each operation is one script call (a sync, one per service
//! it changes), its keys and arguments, and what its answer means.

use super::scripts::SCRIPTS;
use super::RedisStore;
use crate::store::redis_text::parse_total;
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, Store, StoreError,
    StoredState, SyncBatch, WindowKey,
};
use crate::window::WindowSpec;
use ::redis::{FromRedisValue, RedisResult, Script, ScriptInvocation};
use std::cell::Cell;
use std::collections::BTreeMap;

/// One service's changes in a batch: per (period, window start), the calls, the floor (0:
/// none) and the window's end.
type ServiceDeltas<'b> = BTreeMap<(&'b WindowSpec, u64), (u64, u64, u64)>;

/// The changes of `window` in a batch (created empty), its end made the latest seen.
fn window_entry<'s, 'b>(
    services: &'s mut BTreeMap<&'b str, ServiceDeltas<'b>>,
    window: &'b WindowKey,
) -> &'s mut (u64, u64, u64) {
    let entry = services
        .entry(window.service.as_str())
        .or_default()
        .entry((&window.spec, window.start_ms))
        .or_insert((0, 0, 0));
    entry.2 = entry.2.max(window.end_ms);
    entry
}

/// All three admission modes, across processes and hosts: each change is one Lua script.
impl Store for RedisStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        // Per service, per window: the calls (added up, capped: capping at the end equals
        // capping after each) and the latest end.
        let mut services: BTreeMap<&str, ServiceDeltas<'_>> = BTreeMap::new();
        for delta in &batch.deltas {
            let entry = window_entry(&mut services, &delta.window);
            entry.0 = entry
                .0
                .saturating_add(delta.calls)
                .min(StoredState::MAX_TOTAL);
        }
        // Floors: the largest per window, capped (a floor is a maximum, never a sum).
        for raise in &batch.raises {
            let entry = window_entry(&mut services, &raise.window);
            entry.1 = entry.1.max(raise.at_least.min(StoredState::MAX_TOTAL));
        }
        let invocations: Vec<_> = services
            .iter()
            .map(|(service, windows)| {
                let base = self.service_base(service);
                let mut invocation = SCRIPTS.sync.prepare_invoke();
                invocation
                    .key(self.ops_key(service, batch.instance))
                    .arg(self.grace_ms)
                    .arg(batch.seq)
                    .arg(batch.done_below);
                for (&(spec, start_ms), &(calls, floor, end_ms)) in windows {
                    let (end, longest) = self.expiry_args(spec, end_ms);
                    let window = format!("{base}:{}:{start_ms}", spec.key());
                    invocation
                        .key(raise_count_key(&window))
                        .key(window)
                        .arg(calls)
                        .arg(floor)
                        .arg(end)
                        .arg(longest);
                }
                invocation
            })
            .collect();
        let reads: Vec<String> = batch.read.iter().map(|w| self.window_key(w)).collect();
        // Whether a service's script ran: one script per service (each its own slot), so an
        // error after one is no longer "nothing applied".
        let ran = Cell::new(false);
        let stored = self
            .call("sync", true, |connection| {
                for invocation in &invocations {
                    invocation.invoke::<i64>(connection)?;
                    ran.set(true);
                }
                if reads.is_empty() {
                    if invocations.is_empty() {
                        // Nothing to add or read: still check that Redis answers.
                        ::redis::cmd("PING").query::<String>(connection)?;
                    }
                    return Ok(Vec::new());
                }
                let mut pipe = ::redis::pipe();
                pipe.ignore_errors();
                for key in &reads {
                    pipe.cmd("GET").arg(key);
                }
                pipe.query::<Vec<RedisResult<Option<String>>>>(connection)
            })
            .map_err(|error| match ran.get() {
                true => self.after_sending("sync", error),
                false => error,
            })?;
        stored
            .into_iter()
            .zip(&reads)
            .map(|(text, key)| {
                let error = match text {
                    Ok(None) => return Ok(0),
                    Ok(Some(text)) => match parse_total(&text) {
                        Some(total) => return Ok(total),
                        None => StoreError::Corrupt(format!(
                            "Redis at {}: {key:?} is not a whole number",
                            self.target
                        )),
                    },
                    Err(error) if error.code() == Some("WRONGTYPE") => StoreError::Corrupt(
                        format!("Redis at {}: {key:?} is not a whole number", self.target),
                    ),
                    Err(error) => self.call_error("sync", &error, true),
                };
                // The batch's changes went before the reads.
                Err(match invocations.is_empty() {
                    true => error,
                    false => self.after_sending("sync", error),
                })
            })
            .collect()
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        let op = (request.instance, request.seq, request.done_below);
        let (admitted, total, raise_count): (i64, String, String) =
            self.invoke_op("admit", &SCRIPTS.admit, op, &request.window, |invocation| {
                invocation
                    .arg(request.count)
                    .arg(request.below)
                    .arg(request.cap)
                    .arg(u8::from(request.force));
            })?;
        Ok(if admitted == 1 {
            let [total, raise_count] = self.reply_numbers("admit", [&total, &raise_count])?;
            AdmitReply::Admitted { total, raise_count }
        } else {
            let [total] = self.reply_numbers("admit", [&total])?;
            AdmitReply::Denied { total }
        })
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        let op = (request.instance, request.seq, request.done_below);
        let (granted, total, raise_count): (String, String, String) =
            self.invoke_op("lease", &SCRIPTS.lease, op, &request.window, |invocation| {
                invocation.arg(request.block).arg(request.ceiling);
            })?;
        let [granted, total, raise_count] =
            self.reply_numbers("lease", [&granted, &total, &raise_count])?;
        Ok(LeaseReply {
            granted,
            total,
            raise_count,
        })
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        let op = (request.instance, request.seq, request.done_below);
        let taken: String = self.invoke_op(
            "give_back",
            &SCRIPTS.give_back,
            op,
            &request.window,
            |invocation| {
                invocation.arg(request.unused).arg(request.raise_count);
            },
        )?;
        let [taken] = self.reply_numbers("give_back", [&taken])?;
        Ok(taken)
    }
}

impl RedisStore {
    /// `<prefix>:{<service>}:ops:<instance>`: the instance's operations record on the service.
    fn ops_key(&self, service: &str, instance: InstanceId) -> String {
        format!("{}:ops:{instance}", self.service_base(service))
    }

    /// Runs `script`, an admit, lease or give-back, for the operation `(instance, seq,
    /// done_below)` on `window`. Every such script starts with the same keys and arguments:
    /// KEYS the operations record, the window and its raise count; ARGV grace, seq,
    /// done_below, end + grace, longest; `args` adds the script's own.
    fn invoke_op<T: FromRedisValue>(
        &self,
        what: &str,
        script: &Script,
        (instance, seq, done_below): (InstanceId, u64, u64),
        window: &WindowKey,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        let (end, longest) = self.expiry_args(&window.spec, window.end_ms);
        invocation
            .key(self.ops_key(&window.service, instance))
            .key(self.window_key(window))
            .key(raise_count_key(&self.window_key(window)))
            .arg(self.grace_ms)
            .arg(seq)
            .arg(done_below)
            .arg(end)
            .arg(longest);
        args(&mut invocation);
        self.call(what, true, |connection| invocation.invoke(connection))
    }

    /// The arguments of a window's expiry: its end plus grace (at most 2^53, exact in Lua)
    /// and the longest it may live from now (two of the spec's longest windows plus grace: a
    /// window whose end is further off comes from a bogus clock).
    fn expiry_args(&self, spec: &WindowSpec, end_ms: u64) -> (u64, u64) {
        (
            end_ms.saturating_add(self.grace_ms).min(1 << 53),
            spec.max_ms()
                .saturating_mul(2)
                .saturating_add(self.grace_ms),
        )
    }

    /// The numbers a script answered, as text, in order. The script ran: an answer that does
    /// not parse (a broken server or proxy) may follow an applied change, so it is
    /// [`StoreError::Io`] (naming the first that does not parse).
    fn reply_numbers<const N: usize>(
        &self,
        what: &str,
        texts: [&str; N],
    ) -> Result<[u64; N], StoreError> {
        let mut numbers = [0; N];
        for (number, text) in numbers.iter_mut().zip(texts) {
            *number = text.parse().map_err(|_| {
                StoreError::Io(format!(
                    "Redis at {} answered {what} with {text:?}, not a whole number (it may \
                     have been applied)",
                    self.target
                ))
            })?;
        }
        Ok(numbers)
    }
}

/// `<window key>:raises`: how many raises were applied to the window (see
/// [`GiveBack::raise_count`]), an integer created by the first; it expires with the window.
fn raise_count_key(window_key: &str) -> String {
    format!("{window_key}:raises")
}
