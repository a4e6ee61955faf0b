//! The [`Store`] protocol on Redis: each operation is one script call (a sync, one per service
//! it changes), its keys and arguments, and what its answer means.

use super::scripts::SCRIPTS;
use super::RedisStore;
use crate::store::redis_text::parse_total;
use crate::store::{
    AdmitReply, AdmitRequest, GiveBack, InstanceId, LeaseReply, LeaseRequest, Store, StoreError,
    StoredState, SyncBatch, WindowKey, WindowTotal,
};
use crate::window::WindowSpec;
use ::redis::{FromRedisValue, RedisResult, Script};
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
        let cluster = self.is_cluster();
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
                if cluster {
                    // Each key on its own node (a pipeline goes to one node): the keys of
                    // several services are in several slots.
                    let mut values = Vec::with_capacity(reads.len());
                    for key in &reads {
                        match ::redis::cmd("GET").arg(key).query(connection) {
                            Err(error) if error.code() != Some("WRONGTYPE") => return Err(error),
                            value => values.push(value),
                        }
                    }
                    return Ok(values);
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
        request.check()?;
        let op = (request.instance, request.seq, request.done_below);
        let windows: Vec<(&WindowKey, [u64; 2])> =
            std::iter::once((&request.window, [request.below, request.cap]))
                .chain(request.also.iter().map(|w| (&w.window, [w.below, w.cap])))
                .collect();
        let answer: Vec<String> = self.invoke_op(
            "admit",
            &SCRIPTS.admit,
            op,
            &[request.count, u64::from(request.force)],
            &windows,
        )?;
        let (admitted, totals) = self.window_totals("admit", &answer, windows.len())?;
        let (first, also) = totals
            .split_first()
            .ok_or_else(|| self.bad_reply("admit"))?;
        Ok(if admitted == 1 {
            AdmitReply::Admitted {
                total: first.total,
                raise_count: first.raise_count,
                also: also.to_vec(),
            }
        } else {
            AdmitReply::Denied {
                total: first.total,
                also: also.to_vec(),
            }
        })
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        request.check()?;
        let op = (request.instance, request.seq, request.done_below);
        let windows: Vec<(&WindowKey, [u64; 1])> =
            std::iter::once((&request.window, [request.ceiling]))
                .chain(request.also.iter().map(|w| (&w.window, [w.ceiling])))
                .collect();
        let answer: Vec<String> =
            self.invoke_op("lease", &SCRIPTS.lease, op, &[request.block], &windows)?;
        let (granted, totals) = self.window_totals("lease", &answer, windows.len())?;
        let (first, also) = totals
            .split_first()
            .ok_or_else(|| self.bad_reply("lease"))?;
        Ok(LeaseReply {
            granted,
            total: first.total,
            raise_count: first.raise_count,
            also: also.to_vec(),
        })
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        request.check()?;
        let op = (request.instance, request.seq, request.done_below);
        let windows: Vec<(&WindowKey, [u64; 1])> =
            std::iter::once((&request.window, [request.raise_count]))
                .chain(request.also.iter().map(|w| (&w.window, [w.raise_count])))
                .collect();
        let taken: String = self.invoke_op(
            "give_back",
            &SCRIPTS.give_back,
            op,
            &[request.unused],
            &windows,
        )?;
        let [taken] = self.reply_numbers("give_back", [&taken])?;
        Ok(taken)
    }

    fn several_windows(&self) -> bool {
        true
    }
}

impl RedisStore {
    /// `<prefix>:{<service>}:ops:<instance>`: the instance's operations record on the service.
    fn ops_key(&self, service: &str, instance: InstanceId) -> String {
        format!("{}:ops:{instance}", self.service_base(service))
    }

    /// Runs `script`, an admit, lease or give-back, for the operation `(instance, seq,
    /// done_below)` on `windows` (of one service: the request's, then its `also`). Every such
    /// script takes the same layout: KEYS the operations record, then per window the window
    /// and its raise count; ARGV grace, seq, done_below, the operation's own `args`, then per
    /// window its end + grace, longest life and its own arguments.
    fn invoke_op<T: FromRedisValue, const N: usize>(
        &self,
        what: &str,
        script: &Script,
        (instance, seq, done_below): (InstanceId, u64, u64),
        args: &[u64],
        windows: &[(&WindowKey, [u64; N])],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        let service = windows.first().map_or("", |(w, _)| w.service.as_str());
        invocation
            .key(self.ops_key(service, instance))
            .arg(self.grace_ms)
            .arg(seq)
            .arg(done_below);
        for arg in args {
            invocation.arg(arg);
        }
        for (window, own) in windows {
            let key = self.window_key(window);
            let (end, longest) = self.expiry_args(&window.spec, window.end_ms);
            invocation
                .key(&key)
                .key(raise_count_key(&key))
                .arg(end)
                .arg(longest);
            for arg in own {
                invocation.arg(arg);
            }
        }
        self.call(what, true, |connection| invocation.invoke(connection))
    }

    /// An admit's or lease's answer: its first number, then a total and a raise count per
    /// window (`windows` of them).
    fn window_totals(
        &self,
        what: &str,
        answer: &[String],
        windows: usize,
    ) -> Result<(u64, Vec<WindowTotal>), StoreError> {
        if answer.len() != 1 + 2 * windows {
            return Err(self.bad_reply(what));
        }
        let mut numbers = Vec::with_capacity(answer.len());
        for text in answer {
            let [number] = self.reply_numbers(what, [text])?;
            numbers.push(number);
        }
        let totals = numbers[1..]
            .chunks_exact(2)
            .map(|pair| WindowTotal {
                total: pair[0],
                raise_count: pair[1],
            })
            .collect();
        Ok((numbers[0], totals))
    }

    /// An answer of the wrong shape (a broken server or proxy): the script ran, so it may have
    /// been applied.
    fn bad_reply(&self, what: &str) -> StoreError {
        StoreError::Io(format!(
            "Redis at {} answered {what} with a reply of the wrong shape (it may have been \
             applied)",
            self.target
        ))
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
