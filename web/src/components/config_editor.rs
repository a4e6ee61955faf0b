//! Editing the services: add, remove, change limit, period, time zone and thresholds, and a
//! service's further limits (add, remove, change count, period and time zone).

use crate::dynamic::{flag, on_change, on_click, text, Flag};
use crate::engine::Applied;
use crate::format::{self, number};
use crate::state::use_app;
use leptos::prelude::*;
use quota_core::{Limit, Period, ServiceConfig, TrackerConfig, WindowSpec};

/// One service being edited, its fields as typed.
#[derive(Debug, Clone, Copy)]
struct Row {
    /// Stable across edits, for keyed rendering.
    key: u64,
    /// The test-id suffix: the service's name when the row was created, `new-<key>` for an
    /// added one.
    label: StoredValue<String>,
    name: RwSignal<String>,
    limit: RwSignal<String>,
    period: RwSignal<String>,
    /// The window's IANA time zone; empty for UTC.
    zone: RwSignal<String>,
    warn: RwSignal<String>,
    critical: RwSignal<String>,
    /// The service's further limits ([`ServiceConfig::more_limits`]), in order.
    more: RwSignal<Vec<LimitRow>>,
    /// The service as it was: the fields not edited here (the reserve, ...) are kept from it.
    base: StoredValue<ServiceConfig>,
}

/// One further limit of a service being edited, its fields as typed.
#[derive(Debug, Clone, Copy)]
struct LimitRow {
    count: RwSignal<String>,
    period: RwSignal<String>,
    /// The window's IANA time zone; empty for UTC.
    zone: RwSignal<String>,
    /// The limit as it was: its own thresholds and `enforce`, and its window's N and anchor
    /// day while its period stays, are kept from it.
    base: StoredValue<Limit>,
}

impl LimitRow {
    fn new(limit: &Limit) -> LimitRow {
        LimitRow {
            count: RwSignal::new(limit.count.to_string()),
            period: RwSignal::new(limit.window.period().as_str().to_owned()),
            zone: RwSignal::new(zone_name(&limit.window)),
            base: StoredValue::new(limit.clone()),
        }
    }

    /// The row as the limit `number` (from 2) of service `name`; the core validates it further.
    fn parse(&self, name: &str, number: usize) -> Result<Limit, String> {
        let field = format!("limit {number}");
        let mut limit = self.base.get_value();
        limit.count = whole_number(name, &field, self.count.get_untracked())?;
        limit.window = window(
            name,
            &limit.window,
            &self.period.get_untracked(),
            &self.zone.get_untracked(),
        )?;
        Ok(limit)
    }
}

/// `text` as a whole number up to `Number.MAX_SAFE_INTEGER` (the page saves its config as
/// JSON in the browser, which holds no larger whole number exactly), or the message for field
/// `field` of service `name`.
fn whole_number(name: &str, field: &str, text: String) -> Result<u64, String> {
    const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
    match text.trim().parse::<u64>() {
        Ok(n) if n <= MAX_SAFE_INTEGER => Ok(n),
        Ok(_) => Err(format!(
            "service {name:?}: {field} must be at most {MAX_SAFE_INTEGER} (got {text:?})"
        )),
        Err(_) => Err(format!(
            "service {name:?}: {field} must be a whole number (got {text:?})"
        )),
    }
}

/// The window of `period` and `zone` (empty: UTC) as typed for service `name`, in place of
/// `was`. The editor shows no N or anchor day: a window that has them keeps them while its
/// period stays (another period is one unit from the 1st). The core checks the time zone
/// (through the browser's Intl).
fn window(name: &str, was: &WindowSpec, period: &str, zone: &str) -> Result<WindowSpec, String> {
    let period = period
        .parse::<Period>()
        .map_err(|error| format!("service {name:?}: {error}"))?;
    let (units, anchor) = if was.period() == period {
        (was.units(), was.anchor())
    } else {
        (1, None)
    };
    let zone = Some(zone.trim()).filter(|zone| !zone.is_empty());
    WindowSpec::from_parts(period, units, zone, anchor)
        .map_err(|error| format!("service {name:?}: {error}"))
}

/// The IANA name of `window`'s time zone; empty for UTC.
fn zone_name(window: &WindowSpec) -> String {
    window
        .zone()
        .map_or_else(String::new, |zone| zone.name().to_owned())
}

impl Row {
    fn new(key: u64, label: String, service: &ServiceConfig) -> Row {
        Row {
            key,
            label: StoredValue::new(label),
            name: RwSignal::new(service.name.clone()),
            limit: RwSignal::new(service.limit.to_string()),
            period: RwSignal::new(service.window.period().as_str().to_owned()),
            zone: RwSignal::new(zone_name(&service.window)),
            warn: RwSignal::new(number(service.warn_threshold)),
            critical: RwSignal::new(number(service.critical_threshold)),
            more: RwSignal::new(service.more_limits.iter().map(LimitRow::new).collect()),
            base: StoredValue::new(service.clone()),
        }
    }

    /// The row as a service config; the core validates it further.
    fn parse(&self) -> Result<ServiceConfig, String> {
        let name = self.name.get_untracked();
        let number_error = |field: &str, text: &str, kind: &str| {
            format!("service {name:?}: {field} must be {kind} (got {text:?})")
        };
        let limit = whole_number(&name, "limit", self.limit.get_untracked())?;
        let fraction = |field: &str, text: String| {
            format::parse_number(text.trim()).ok_or_else(|| number_error(field, &text, "a number"))
        };
        // Fields set on the row's base config (`ServiceConfig` is non-exhaustive): what the
        // editor does not show (reserve, admission) stays as it was.
        let mut config = self.base.get_value();
        config.warn_threshold = fraction("warn_threshold", self.warn.get_untracked())?;
        config.critical_threshold = fraction("critical_threshold", self.critical.get_untracked())?;
        config.limit = limit;
        config.window = window(
            &name,
            &config.window,
            &self.period.get_untracked(),
            &self.zone.get_untracked(),
        )?;
        // Loops rather than `collect` into a `Result`: each of those is its own adapter in the
        // `.wasm`.
        let more = self.more.get_untracked();
        config.more_limits = Vec::with_capacity(more.len());
        for (at, limit) in more.iter().enumerate() {
            config.more_limits.push(limit.parse(&name, at + 2)?);
        }
        config.name = name;
        Ok(config)
    }
}

/// The config editor: a row per service (name, limit, period, time zone, warn and critical
/// thresholds as fractions of the limit), add and remove, and Apply. In locked mode Apply
/// changes the running tracker and says what changed (counts are kept); racy mode, which has
/// no reconfigure, starts over. An invalid config shows the core's error message and the
/// running config stays as it was.
#[component]
pub fn ConfigEditor() -> impl IntoView {
    let state = use_app();
    let next_key = StoredValue::new(0u64);
    let take_key = move || {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        key
    };
    let rows_from = move |config: &TrackerConfig| {
        config
            .services
            .iter()
            .map(|service| Row::new(take_key(), service.name.clone(), service))
            .collect::<Vec<_>>()
    };
    let rows = RwSignal::new(state.config().with_untracked(rows_from));
    let error = RwSignal::new(None::<String>);
    // What the last Apply did; empty until then and after an edit.
    let applied = RwSignal::new(String::new());
    let discard = move || {
        rows.set(state.config().with_untracked(rows_from));
        error.set(None);
    };
    let add = move |_| {
        let key = take_key();
        let service = ServiceConfig::new(format!("service-{key}"), 100, Period::Minute);
        rows.update(|rows| rows.push(Row::new(key, format!("new-{key}"), &service)));
        applied.set(String::new());
    };
    let apply = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let parsed = rows.with_untracked(|rows| {
            let mut services = Vec::with_capacity(rows.len());
            for row in rows {
                services.push(row.parse()?);
            }
            Ok(services)
        });
        let result = parsed.and_then(|services| {
            state
                .apply_config(TrackerConfig::new(services))
                .map_err(|error| error.to_string())
        });
        match result {
            Ok(done) => {
                discard();
                applied.set(applied_message(&done));
            }
            Err(message) => {
                error.set(Some(message));
                applied.set(String::new());
            }
        }
    };
    let single = flag(move || rows.with(|rows| rows.len() <= 1));
    view! {
        <section class="panel config" aria-labelledby="config-heading">
            <h2 id="config-heading">"Services config"</h2>
            <p class="hint">
                "Thresholds are fractions of the limit (0.5 = 50 %); a time zone (IANA, such as \
                 America/Los_Angeles) resets the window at local time, empty is UTC. Add limit \
                 gives a service another window (50 an hour and 1,000 a day): a call must fit \
                 every limit. Apply \
                 changes the running tracker and keeps the counts (a new period starts that \
                 service's window fresh); racy mode, which has no reconfigure, starts over."
            </p>
            <form on:submit=apply aria-describedby="config-error" novalidate>
                <div class="config-rows">
                    <For each=move || rows.get() key=|row| row.key let:row>
                        <ConfigRow row=row rows=rows single=single.clone()/>
                    </For>
                </div>
                <p
                    id="config-error"
                    class="error"
                    role="alert"
                    data-testid="config-error"
                >
                    {text(move || error.get().unwrap_or_default())}
                </p>
                <p class="applied" aria-live="polite" data-testid="config-applied">
                    {text(move || applied.get())}
                </p>
                <div class="buttons">
                    <button type="button" data-testid="config-add" on:click=on_click(add)>
                        "Add service"
                    </button>
                    <button type="submit" class="primary" data-testid="config-apply">
                        "Apply"
                    </button>
                    <button type="button" data-testid="config-discard" on:click=on_click(move |_| discard())>
                        "Discard changes"
                    </button>
                </div>
            </form>
        </section>
    }
}

/// What Apply did, in words.
fn applied_message(applied: &Applied) -> String {
    match applied {
        Applied::Reconfigured(changes) => {
            let mut parts = Vec::new();
            for (what, names) in [
                ("added", &changes.added),
                ("removed", &changes.removed),
                ("changed", &changes.changed),
            ] {
                if !names.is_empty() {
                    parts.push(format!("{what} {}", names.join(", ")));
                }
            }
            if parts.is_empty() {
                "Applied: nothing changed.".to_owned()
            } else {
                format!(
                    "Applied to the running tracker, counts kept: {}.",
                    parts.join("; ")
                )
            }
        }
        Applied::StartedOver => {
            "Applied: racy mode has no reconfigure, so the demonstration counts from zero with \
             the new config."
                .to_owned()
        }
    }
}

/// The inputs of one service.
#[component]
fn ConfigRow(row: Row, rows: RwSignal<Vec<Row>>, single: Flag) -> impl IntoView {
    let id = move |field: &str| format!("config-{field}-{}", row.label.get_value());
    let remove = move |_| rows.update(|rows| rows.retain(|r| r.key != row.key));
    let field = move |field: &str,
                      title: &'static str,
                      signal: RwSignal<String>,
                      mode: &'static str,
                      placeholder: &'static str| {
        text_field(id(field), title.into(), signal, mode, placeholder)
    };
    view! {
        <fieldset class="config-row">
            <legend>{text(move || row.name.get())}</legend>
            <div class="fields">
                {field("name", "Name", row.name, "text", "")}
                {field("limit", "Limit", row.limit, "numeric", "")}
                {period_select(id("period"), row.period)}
                {field("zone", "Time zone", row.zone, "text", "UTC")}
                {field("warn", "Warn at", row.warn, "decimal", "")}
                {field("critical", "Critical at", row.critical, "decimal", "")}
                <button
                    type="button"
                    class="remove"
                    data-testid=id("remove")
                    aria-label=text(move || format!("Remove {}", row.name.get()))
                    disabled=single
                    on:click=on_click(remove)
                >
                    "Remove"
                </button>
            </div>
            // Drawn again whole when a limit comes or goes (the typed values are in the rows'
            // signals), so that each limit's test ids and labels say its place: `limit 2`, ...
            // Keyed by place and count, as a `u64` (as the rows are): built, never rebuilt.
            <For
                each=move || {
                    row.more.with(|more| {
                        let count = more.len();
                        more.iter()
                            .enumerate()
                            .map(|(at, limit)| (at + 2, count, *limit))
                            .collect::<Vec<_>>()
                    })
                }
                key=|&(number, count, _)| (number as u64) << 32 | count as u64
                children=move |(number, _, limit)| limit_fields(row, limit, number)
            />
            <button
                type="button"
                class="add-limit"
                data-testid=id("add-limit")
                on:click=on_click(move |_| {
                    let limit = new_limit(row);
                    row.more.update(|more| more.push(limit));
                })
            >
                "Add limit"
            </button>
        </fieldset>
    }
}

/// A further limit for service `row`: 1,000 a day, or per the first of an hour, a month, a
/// week, a minute and a second that it has no limit in (a limit per window).
fn new_limit(row: Row) -> LimitRow {
    let used = |period: Period| {
        row.period.get_untracked() == period.as_str()
            || row.more.with_untracked(|more| {
                more.iter()
                    .any(|l| l.period.get_untracked() == period.as_str())
            })
    };
    let period = [
        Period::Day,
        Period::Hour,
        Period::Month,
        Period::Week,
        Period::Minute,
        Period::Second,
    ]
    .into_iter()
    .find(|&period| !used(period))
    .unwrap_or(Period::Day);
    LimitRow::new(&Limit::new(1_000, period))
}

/// The inputs of the further limit `limit`, number `number` (from 2) of service `row`.
fn limit_fields(row: Row, limit: LimitRow, number: usize) -> impl IntoView {
    let id = move |field: &str| format!("config-{field}-{number}-{}", row.label.get_value());
    // The list is drawn again on every change: the place is the limit's.
    let remove = move |_| {
        row.more.update(|more| {
            more.remove(number - 2);
        })
    };
    view! {
        <div class="fields more-limit">
            {text_field(id("limit"), format!("Limit {number}"), limit.count, "numeric", "")}
            {period_select(id("period"), limit.period)}
            {text_field(id("zone"), "Time zone".into(), limit.zone, "text", "UTC")}
            <button
                type="button"
                class="remove"
                data-testid=id("remove")
                aria-label=text(move || format!("Remove limit {number} of {}", row.name.get()))
                on:click=on_click(remove)
            >
                "Remove"
            </button>
        </div>
    }
}

/// A labelled text input of `signal`, whose id and test id are `id`.
fn text_field(
    id: String,
    title: String,
    signal: RwSignal<String>,
    mode: &'static str,
    placeholder: &'static str,
) -> impl IntoView {
    view! {
        <div class="field">
            <label for=id.clone()>{title}</label>
            <input
                id=id.clone()
                data-testid=id
                type="text"
                inputmode=mode
                placeholder=placeholder
                prop:value=text(move || signal.get())
                on:input=on_change(move |ev| signal.set(event_target_value(&ev)))
            />
        </div>
    }
}

/// The labelled period select of `signal`, whose id and test id are `id`.
fn period_select(id: String, signal: RwSignal<String>) -> impl IntoView {
    view! {
        <div class="field">
            <label for=id.clone()>"Period"</label>
            <select
                id=id.clone()
                data-testid=id
                prop:value=text(move || signal.get())
                on:change=on_change(move |ev| signal.set(event_target_value(&ev)))
            >
                {Period::ALL.map(|p| view! { <option value=p.as_str()>{p.as_str()}</option> })}
            </select>
        </div>
    }
}
