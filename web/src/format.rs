//! Numbers and times as the page writes them.

/// `ms` since the Unix epoch as a UTC time of day, `HH:MM:SS`.
pub fn time_of_day(ms: u64) -> String {
    let seconds = ms / 1_000 % 86_400;
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// A duration in ms as the two largest units: `42 s`, `3 min 05 s`, `5 h 02 min`, `12 d 04 h`.
pub fn countdown(ms: u64) -> String {
    let seconds = ms.div_ceil(1_000);
    let (days, hours, minutes) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60);
    if days > 0 {
        format!("{days} d {hours:02} h")
    } else if hours > 0 {
        format!("{hours} h {minutes:02} min")
    } else if minutes > 0 {
        format!("{minutes} min {:02} s", seconds % 60)
    } else {
        format!("{seconds} s")
    }
}

/// A rate with at most one decimal: `16000`, `59.8`.
pub fn rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}
