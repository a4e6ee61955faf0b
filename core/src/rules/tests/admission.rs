//! Admission: the reserve, the Critical level, reduced rate, and shared admission's rule.

use super::*;
use crate::store::{AdmitReply, AdmitRequest, InstanceId, StoredState, WindowKey};
use crate::window::Period;

const T0: u64 = 1_718_000_000_000 / 86_400_000 * 86_400_000;

fn rules(limit: u64, critical: f64, reserve: f64) -> ServiceRules {
    let config = ServiceConfig::builder("s", limit, Period::Day)
        .warn_threshold(critical.min(0.5))
        .critical_threshold(critical)
        .reserve_fraction(reserve)
        .build()
        .unwrap();
    ServiceRules::new(&config, 0.25)
}

fn try_record(count: u64, priority: bool) -> Request {
    admit(count, false, priority)
}

/// The refusal of one step, or `None` when it counted.
fn refusal(
    rules: &ServiceRules,
    state: &mut ServiceState,
    request: Request,
) -> Option<(u64, DenyReason)> {
    match rules.step(state, T0, request).refused {
        None => None,
        Some(Refusal::Denied { used, reason }) => Some((used, reason)),
        Some(Refusal::Overflow | Refusal::Removed | Refusal::Shared) => panic!("no overflow here"),
    }
}

#[test]
fn the_reserve_stops_normal_calls_and_priority_calls_take_it() {
    // Critical at the limit: only the reserve (10 of 100) stops normal admission.
    let rules = rules(100, 1.0, 0.1);
    assert_eq!((rules.reserve, rules.normal_cap), (10, 90));
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    assert_eq!(refusal(&rules, &mut state, try_record(89, false)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(2, false)),
        Some((89, DenyReason::Reserve)),
        "89 + 2 would take a call of the reserve"
    );
    assert_eq!(refusal(&rules, &mut state, try_record(1, false)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((90, DenyReason::Reserve))
    );
    assert!(!rules.allows(90, false));
    // A priority call may use the reserve, up to the limit and no further.
    assert_eq!(
        refusal(&rules, &mut state, try_record(11, true)),
        Some((90, DenyReason::Limit))
    );
    assert_eq!(refusal(&rules, &mut state, try_record(10, true)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, true)),
        Some((100, DenyReason::Limit))
    );
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((100, DenyReason::Limit))
    );
    assert_eq!(state.used, 100);
}

#[test]
fn the_critical_level_stops_normal_calls_when_it_comes_first() {
    // The defaults: Critical at 80, reserve 10 (from 90): Critical comes first.
    let rules = rules(100, 0.8, 0.1);
    assert_eq!(rules.normal_cap, 80);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    assert_eq!(refusal(&rules, &mut state, try_record(79, false)), None);
    // A normal call may reach the Critical level, not pass it.
    assert_eq!(
        refusal(&rules, &mut state, try_record(2, false)),
        Some((79, DenyReason::Critical))
    );
    assert_eq!(refusal(&rules, &mut state, try_record(1, false)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((80, DenyReason::Critical))
    );
    assert_eq!(refusal(&rules, &mut state, try_record(20, true)), None);
    assert_eq!(state.used, 100);
}

#[test]
fn past_the_critical_level_the_reason_is_critical_even_where_the_reserve_comes_first() {
    // Critical at 95, the reserve from 90.
    let rules = rules(100, 0.95, 0.1);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    assert_eq!(refusal(&rules, &mut state, try_record(90, false)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((90, DenyReason::Reserve))
    );
    assert_eq!(refusal(&rules, &mut state, try_record(5, true)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((95, DenyReason::Critical))
    );
}

#[test]
fn reduced_rate_caps_priority_calls_too() {
    let rules = rules(100, 0.8, 0.1);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    let reduced = |count, priority| admit(count, true, priority);
    assert_eq!(refusal(&rules, &mut state, reduced(25, true)), None);
    for priority in [false, true] {
        assert_eq!(
            refusal(&rules, &mut state, reduced(1, priority)),
            Some((25, DenyReason::ReducedRate))
        );
    }
    // Past the limit is named first.
    assert_eq!(
        refusal(&rules, &mut state, reduced(76, true)),
        Some((25, DenyReason::Limit))
    );
}

#[test]
fn a_reserve_of_zero_lets_normal_calls_reach_the_limit() {
    let rules = rules(10, 1.0, 0.0);
    let mut state = ServiceState::new(&Period::Day.into(), T0);
    assert_eq!(refusal(&rules, &mut state, try_record(10, false)), None);
    assert_eq!(
        refusal(&rules, &mut state, try_record(1, false)),
        Some((10, DenyReason::Limit))
    );
}

/// A store's admission (the real `StoredState::admit`) with `shared_rule` decides as
/// `denies` does, for every count, level, reserve, mode and priority of small services.
#[test]
fn shared_admission_applies_the_same_rule() {
    let key = WindowKey {
        service: "s".into(),
        spec: Period::Day.into(),
        start_ms: T0,
        end_ms: T0 + 86_400_000,
    };
    let request = |seq, count, (below, cap): (u64, u64), force| AdmitRequest {
        instance: InstanceId::from_u128(1),
        seq,
        done_below: 0,
        window: key.clone(),
        count,
        below,
        cap,
        force,
        also: Vec::new(),
    };
    for limit in [1, 2, 3, 7, 10, 20] {
        for critical in [0.5, 0.8, 0.9, 1.0] {
            for reserve in [0.0, 0.1, 0.3, 0.5] {
                let rules = rules(limit, critical, reserve);
                for used in 0..=limit + 1 {
                    for count in 0..=limit + 1 {
                        for reduced in [false, true] {
                            for priority in [false, true] {
                                let mut store = StoredState::new();
                                if used > 0 {
                                    store.admit(&request(1, used, (0, 0), true));
                                }
                                let call = admit(count, reduced, priority);
                                let rule = rules.shared_rule(call);
                                let reply = store.admit(&request(2, count, rule, false));
                                let admitted = matches!(reply, AdmitReply::Admitted { .. });
                                let denies = rules.denies(used, call);
                                assert_eq!(
                                    admitted,
                                    denies.is_none(),
                                    "limit {limit} critical {critical} reserve {reserve} \
                                     used {used} count {count} reduced {reduced} \
                                     priority {priority}: {denies:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The fast path's boundaries are the rules': below `quiet_below`, a count changes neither
/// the level nor admission's answer; at it, one of them changes.
#[test]
fn quiet_below_is_where_the_level_or_admission_changes() {
    for limit in [1, 2, 3, 7, 10, 20] {
        for critical in [0.5, 0.8, 1.0] {
            for reserve in [0.0, 0.1, 0.3] {
                let rules = rules(limit, critical, reserve);
                for used in 0..=limit + 1 {
                    for count in 1..=limit + 2 {
                        for ask in [Ask::Record, Ask::Normal, Ask::Priority] {
                            let call = Request {
                                count,
                                ask,
                                reduced_rate: false,
                                served: false,
                            };
                            let same_level = rules.level(used + count) == rules.level(used);
                            let admitted = ask == Ask::Record || rules.denies(used, call).is_none();
                            assert_eq!(
                                used + count < rules.quiet_below(used, ask),
                                same_level && admitted,
                                "limit {limit} critical {critical} reserve {reserve} used \
                                 {used} count {count} {ask:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}
