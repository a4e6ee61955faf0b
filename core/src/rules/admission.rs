//! Admission: what a call asks for, and the rule that admits it or names why not.

use super::ServiceRules;
use crate::config::ServiceConfig;
use crate::error::DenyReason;

/// What a call asks of a service: `count` calls under `ask`, in reduced-rate mode or not.
///
/// The one request of admission: the step ([`ServiceRules::step`]), the fast path
/// (`FastPath::try_count`) and shared admission (`Exact`, `Leased`) all take it, and the rules
/// below ([`cap`](ServiceRules::cap), [`denies`](ServiceRules::denies),
/// [`shared_rule`](ServiceRules::shared_rule)) read it. A small `Copy` value (16 bytes, the
/// size of the step's request enum it replaces): inlined along the hot path, it lives in
/// registers.
///
/// How the next features extend it rather than add a type:
/// - Several limits per service (issue 18): the step checks the same request against every
///   limit's rules (admitted only if none [`denies`](ServiceRules::denies) it) and counts it in
///   every limit's window; the request does not change.
/// - Holds settled later (issue 19): a hold asks as `try_record` does (`Normal` or
///   `Priority`); settling above the estimate records the excess (`Record`); settling below
///   it, or cancelling, is a give-back ([`ServiceRules::lower`]), not a request.
///   `try_record_many` is one request per service, checked all before any is counted.
/// - Waiting for capacity (issue 20): `until_ready` keeps its request and retries it as it
///   is, reading the mode again for each try ([`with_reduced_rate`](Self::with_reduced_rate));
///   a priority waiter is one whose request asks `Priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Request {
    /// The calls asked for: at least 1 from the API (0 is refused before any step); 0 for a
    /// read, and for a shared `can_call`, which asks about one call.
    pub(crate) count: u64,
    pub(crate) ask: Ask,
    /// Whether reduced-rate mode caps admission ([`cap`](ServiceRules::cap)). Read by the
    /// tracker for `try_record` only: a record is never refused, so its request (on the hot
    /// path) does not read the mode. Shared admission, which sends a rule to the store with
    /// every call, reads the mode again when it decides.
    pub(crate) reduced_rate: bool,
    /// A call `until_ready` queued, admitted in its turn: the queue does not hold it back
    /// (`ServiceSlot::queued_ahead`).
    pub(crate) served: bool,
}

// The hot path copies it through every call: it must stay this small.
const _: () = assert!(std::mem::size_of::<Request>() <= 16);

/// Which admission a [`Request`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Only roll over if due (reads: `usage`, `can_call`, snapshots); counts nothing.
    Read,
    /// Count always (`record_call`): refused only if the counter would overflow. Where a rule
    /// goes with it (a store's forced admission, a lease it takes) it is the normal one.
    Record,
    /// Count only if normal admission allows (`try_record`): see [`ServiceRules::denies`].
    Normal,
    /// Count only if priority admission allows (`try_record_priority`): up to the limit.
    Priority,
}

impl Request {
    /// A read: rolls the window over if due, counts nothing.
    pub(crate) const READ: Request = Request {
        count: 0,
        ask: Ask::Read,
        reduced_rate: false,
        served: false,
    };

    /// `record_call` of `count` calls.
    #[inline]
    pub(crate) const fn record(count: u64) -> Self {
        Request {
            count,
            ask: Ask::Record,
            reduced_rate: false,
            served: false,
        }
    }

    /// `try_record` of `count` calls (normal admission).
    #[inline]
    pub(crate) const fn normal(count: u64, reduced_rate: bool) -> Self {
        Request {
            count,
            ask: Ask::Normal,
            reduced_rate,
            served: false,
        }
    }

    /// `try_record_priority` of `count` calls.
    #[inline]
    pub(crate) const fn priority(count: u64, reduced_rate: bool) -> Self {
        Request {
            count,
            ask: Ask::Priority,
            reduced_rate,
            served: false,
        }
    }

    /// The same request, as the turn of a call `until_ready` queued.
    #[cfg(not(target_arch = "wasm32"))]
    #[inline]
    pub(crate) const fn served(self) -> Self {
        Request {
            served: true,
            ..self
        }
    }

    /// The same request, in reduced-rate mode or not (the mode as read when deciding).
    #[inline]
    pub(crate) const fn with_reduced_rate(self, reduced_rate: bool) -> Self {
        Request {
            reduced_rate,
            ..self
        }
    }
}

impl ServiceRules {
    /// Whether one more call is admitted at `used` (`can_call`: normal admission; always, in
    /// shadow mode).
    pub(crate) fn allows(&self, used: u64, reduced_rate: bool) -> bool {
        !self.enforce
            || self
                .denies(used, Request::normal(1, reduced_rate))
                .is_none()
    }

    /// The most calls admission lets the window's count reach: the limit for a priority call,
    /// `min(critical threshold, limit - reserve)` for a normal one (and for a record, which is
    /// never refused, the rule that goes with it to a store), and in reduced rate no more than
    /// the reduced allowance either way.
    #[inline]
    pub(crate) fn cap(&self, request: Request) -> u64 {
        let cap = if request.ask == Ask::Priority {
            self.limit
        } else {
            self.normal_cap
        };
        if request.reduced_rate {
            cap.min(self.reduced_allowance)
        } else {
            cap
        }
    }

    /// The admission rule, the one place it is written (the tracker's step, `can_call`, and
    /// shared admission through [`shared_rule`](Self::shared_rule) all apply it): the
    /// request's `count` more calls at `used` are admitted if `used + count` is at most
    /// [`cap`](Self::cap). A count of 0 asks about one call. A record is never refused: the
    /// step does not ask (what this says of one is the normal rule's answer).
    ///
    /// The rule that refuses, if one does, naming first the rules that refuse priority calls
    /// too: [`Limit`](DenyReason::Limit) (past the limit), then
    /// [`ReducedRate`](DenyReason::ReducedRate) (past the reduced allowance); then, for a
    /// normal call only, [`Critical`](DenyReason::Critical) (at the Critical level, or the
    /// call would pass it) or [`Reserve`](DenyReason::Reserve) (the call would take calls of
    /// the reserve, and the reserve comes before the Critical threshold). So `Critical` and
    /// `Reserve` mean: a priority call would be admitted.
    #[inline]
    pub(crate) fn denies(&self, used: u64, request: Request) -> Option<DenyReason> {
        let after = used.saturating_add(request.count.max(1));
        if after <= self.cap(request) {
            return None;
        }
        Some(self.refusing(used, after, request.reduced_rate))
    }

    /// The reason [`denies`](Self::denies) names for a refused count that brings `used` to
    /// `after`.
    #[cold]
    fn refusing(&self, used: u64, after: u64, reduced_rate: bool) -> DenyReason {
        if after > self.limit {
            DenyReason::Limit
        } else if reduced_rate && after > self.reduced_allowance {
            DenyReason::ReducedRate
        } else if self.reserve_first && used < self.thresholds.critical_at {
            DenyReason::Reserve
        } else {
            DenyReason::Critical
        }
    }

    /// `(below, cap)` for a shared store's admission ([`AdmitRequest`](crate::AdmitRequest)):
    /// admit while the total is below `below` and total + count is at most `cap`. Both are
    /// [`cap`](Self::cap): for a count of at least 1 that is the rule of
    /// [`denies`](Self::denies), and for a count of 0 (`can_call`) it asks about one call. A
    /// record is sent forced, with the normal rule (the store counts it whatever the rule).
    pub(crate) fn shared_rule(&self, request: Request) -> (u64, u64) {
        let cap = self.cap(request);
        (cap, cap)
    }

    /// The fast path's boundary for `ask` at `used`, out of reduced rate (which takes the
    /// lock): counts that keep `used + count` below it change nothing but the count, no level
    /// ([`level_holds_below`](Self::level_holds_below)) and, for admission, no refusal
    /// ([`cap`](Self::cap)). 0 for a read (it takes the lock, to roll the window over).
    #[inline]
    pub(crate) fn quiet_below(&self, used: u64, ask: Ask) -> u64 {
        let level = self.level_holds_below(used);
        match ask {
            Ask::Read => 0,
            Ask::Record => level,
            Ask::Normal | Ask::Priority => {
                let cap = self.cap(Request {
                    count: 0,
                    ask,
                    reduced_rate: false,
                    served: false,
                });
                level.min(cap.saturating_add(1))
            }
        }
    }

    /// A lease's ceiling: the normal [`cap`](Self::cap), whatever the call that takes the
    /// lease asks (a block never holds calls of the reserve).
    pub(crate) fn lease_ceiling(&self, reduced_rate: bool) -> u64 {
        self.cap(Request::normal(0, reduced_rate))
    }
}

// `ServiceConfig::normal_stop` lives here, beside the rule it reports, so that the config
// module does not import the rules (which are computed from it).
impl ServiceConfig {
    /// Where normal admission (`try_record`, `can_call`, and a lease's ceiling) stops in each
    /// window, and the rule that stops it: [`DenyReason::Critical`] at the Critical threshold
    /// (`critical_threshold x limit`, rounded up), or [`DenyReason::Reserve`] at `limit -
    /// floor(limit x reserve_fraction)` when that comes first. The tracker's own rule, not a
    /// copy of it (outside reduced-rate mode, which stops earlier).
    ///
    /// ```
    /// use quota_core::{DenyReason, Period, ServiceConfig};
    /// let llm = ServiceConfig::new("llm", 10_000, Period::Day);
    /// assert_eq!(llm.normal_stop(), (8_000, DenyReason::Critical));
    /// let tight = ServiceConfig::builder("llm", 10_000, Period::Day)
    ///     .reserve_fraction(0.3)
    ///     .build()?;
    /// assert_eq!(tight.normal_stop(), (7_000, DenyReason::Reserve));
    /// # Ok::<(), quota_core::QuotaError>(())
    /// ```
    pub fn normal_stop(&self) -> (u64, DenyReason) {
        let rules = ServiceRules::new(self, 0.0);
        let reason = if rules.reserve_first {
            DenyReason::Reserve
        } else {
            DenyReason::Critical
        };
        (rules.normal_cap, reason)
    }
}
