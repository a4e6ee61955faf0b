// Local times from the JS engine's `Intl` for `intl.rs`: one `Intl.DateTimeFormat` per zone,
// with a 24-hour clock, made on first use and kept (a module's state is its thread's, as a
// formatter must be). Here rather than in Rust: the wasm then carries no formatter cache or
// `Intl` lookups of its own.

/** The formatters made so far, by zone name. */
const formatters = new Map();

/** The fields `localTime` writes, in order. */
const FIELDS = ["year", "month", "day", "hour", "minute", "second"];

/** The formatter of zone `name`, or `undefined` if `Intl` refuses the zone (a `RangeError`). */
function formatter(name) {
  let formatter = formatters.get(name);
  if (formatter === undefined) {
    try {
      formatter = new Intl.DateTimeFormat("en-US", {
        timeZone: name,
        hourCycle: "h23",
        year: "numeric",
        month: "numeric",
        day: "numeric",
        hour: "numeric",
        minute: "numeric",
        second: "numeric",
      });
    } catch {
      return undefined;
    }
    formatters.set(name, formatter);
  }
  return formatter;
}

/** The zone's name as the engine reports it, or `undefined` if `Intl` refuses the zone. */
export function resolvedZone(name) {
  return formatter(name)?.resolvedOptions().timeZone;
}

/**
 * Writes the local year, month, day, hour, minute and second at `second` (seconds since the
 * epoch) in zone `name` into `fields`, each read as JavaScript's `+value` reads the digits;
 * `false` (nothing written) if `Intl` refuses the zone.
 */
export function localTime(name, second, fields) {
  const zone = formatter(name);
  if (zone === undefined) return false;
  for (const part of zone.formatToParts(new Date(second * 1000))) {
    const index = FIELDS.indexOf(part.type);
    if (index >= 0) fields[index] = +part.value;
  }
  return true;
}
