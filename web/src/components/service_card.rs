//! One service's card: usage, bar with thresholds, level, period and countdown to reset.

use crate::format;
use crate::markup::escape;
use crate::model::ServiceView;
use quota_core::Level;
use std::fmt::Write;

/// The card of service `name` as markup, appended to `html`: used / limit / remaining, a bar
/// with the warn and critical markers, the level as a word and a colour, the period and the
/// time until the window resets, for `service` (blank while the frame has no such service) at
/// `at_ms`.
pub fn card(html: &mut String, name: &str, service: Option<&ServiceView>, at_ms: u64) {
    let level = service.map_or(Level::Normal, |s| s.usage.level());
    let name = escape(name);
    let number = |f: fn(&ServiceView) -> u64| service.map(|s| f(s).to_string()).unwrap_or_default();
    let percent = |f: fn(&ServiceView) -> f64| service.map_or(0.0, f);
    let (used, limit, remaining) = (
        number(|s| s.usage.used),
        number(|s| s.usage.limit),
        number(|s| s.usage.remaining),
    );
    let period = service
        .map(|s| s.usage.period.to_string())
        .unwrap_or_default();
    let reset = service
        .map(|s| format::countdown(s.usage.reset_at_ms.saturating_sub(at_ms)))
        .unwrap_or_default();
    let _ = write!(
        html,
        "<article class=\"card level-{level}\" data-testid=\"card-{name}\" \
         aria-labelledby=\"card-heading-{name}\"><header class=\"card-header\">\
         <h3 id=\"card-heading-{name}\">{name}</h3><span class=\"badge\"><span class=\"badge-icon\" aria-hidden=\"true\">{}</span>\
         <span data-testid=\"level-{name}\">{level}</span></span></header>\
         <p class=\"usage\"><span class=\"used\" data-testid=\"used-{name}\">{used}</span> / \
         <span data-testid=\"limit-{name}\">{limit}</span> used · \
         <span data-testid=\"remaining-{name}\">{remaining}</span> left</p>\
         <div class=\"bar\" role=\"meter\" aria-label=\"{name} quota used\" aria-valuemin=\"0\" \
         aria-valuemax=\"{limit}\" aria-valuenow=\"{}\">\
         <div class=\"bar-fill\" style=\"width: {}%\"></div>\
         <div class=\"bar-marker warn\" title=\"warning threshold\" style=\"left: {}%\"></div>\
         <div class=\"bar-marker critical\" title=\"critical threshold\" style=\"left: {}%\"></div>\
         </div><p class=\"period\">per <span data-testid=\"period-{name}\">{period}</span> · \
         resets in <span data-testid=\"reset-{name}\">{reset}</span></p></article>",
        icon(level),
        number(|s| s.usage.used.min(s.usage.limit)),
        percent(|s| s.usage.percent_used().clamp(0.0, 100.0)),
        percent(|s| s.usage.warn_threshold) * 100.0,
        percent(|s| s.usage.critical_threshold) * 100.0,
    );
}

/// A symbol beside the level word (never the only signal).
fn icon(level: Level) -> &'static str {
    match level {
        Level::Normal => "●",
        Level::Warning => "▲",
        Level::Critical => "◆",
        Level::Exhausted => "■",
    }
}
