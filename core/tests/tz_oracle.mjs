// The time zone oracle of `tz_oracle.rs`: quota windows computed from Node's `Intl` alone (the
// JS engine's own time zone data, no library), printed as JSON for the Rust test to compare
// with `WindowSpec::window_at`.
//
//   node core/tests/tz_oracle.mjs            -> { "cases": {...}, "fixture": {...} }
//   node core/tests/tz_oracle.mjs --fixture  -> the fixture only (core/tests/tz_oracle_fixture.json)
//
// Both are `{ key: [start, length, start, length, ...] }` in seconds since the epoch: each
// pair is one window of the spec whose key is `key`, from `start` (inclusive) for `length`
// seconds. The fixture is the subset the wasm32 test (tests/tests/time_zones.rs) checks in a
// browser; the Rust test asserts that it equals what this script prints now.
//
// What a window is, written from the definitions and not from the Rust code:
// - a day starts at the first instant at which the zone's clock reads its date's 00:00:00 or
//   later (so where the clock skips midnight, at the end of the gap);
// - a week starts on Monday's day start; a month with anchor day A on the day start of day
//   min(A, days in the month); N months from the months since January 1970 divisible by N;
// - an hour (or 30 minutes) is a stretch of the clock's hour (half hour) on one offset: it ends
//   at the next hour on the clock or where the offset changes, whichever is first.

const ZONES = [
  "America/Los_Angeles",
  "Europe/Paris",
  "Australia/Lord_Howe",
  "Asia/Kolkata",
  "America/Sao_Paulo",
  "Pacific/Apia",
  "Europe/London",
  "Etc/GMT+5",
];
const DAY = 86_400;

const formatters = new Map();

// The zone's clock at `second` (seconds since the epoch), as seconds since its 1970-01-01 00:00.
function clock(zone, second) {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone: zone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(zone, format);
  }
  const f = {};
  for (const part of format.formatToParts(new Date(second * 1000))) f[part.type] = Number(part.value);
  return Date.UTC(f.year, f.month - 1, f.day, f.hour % 24, f.minute, f.second) / 1000;
}

const offset = (zone, second) => clock(zone, second) - second;

// The first second in (low, high] at which the offset differs from the one at `low`.
function change(zone, low, high) {
  const before = offset(zone, low);
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (offset(zone, middle) === before) low = middle;
    else high = middle;
  }
  return high;
}

// Every offset change from `from` to `to` (seconds), found day by day.
function transitions(zone, from, to) {
  const found = [];
  for (let at = from; at < to; at += DAY) {
    if (offset(zone, at) !== offset(zone, at + DAY)) found.push(change(zone, at, at + DAY));
  }
  return found;
}

// The first instant at which the clock reads `local` (seconds since 1970-01-01 00:00 local)
// or later: the smallest candidate that does, among the instants where some nearby offset puts
// `local` and the changes of offset nearby (the first such instant is one of them).
function firstReading(zone, local) {
  const samples = [-2, -1, 0, 1, 2].map((days) => local + days * DAY);
  const candidates = samples.map((at) => local - offset(zone, at));
  for (let i = 0; i + 1 < samples.length; i++) {
    if (offset(zone, samples[i]) !== offset(zone, samples[i + 1])) {
      candidates.push(change(zone, samples[i], samples[i + 1]));
    }
  }
  return Math.min(...candidates.filter((at) => clock(zone, at) >= local));
}

const dayNumber = (year, month, day) => Date.UTC(year, month - 1, day) / 1000 / DAY;
const civil = (days) => {
  const date = new Date(days * DAY * 1000);
  return [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate()];
};
const starts = new Map();
function dayStart(zone, days) {
  const id = `${zone} ${days}`;
  if (!starts.has(id)) starts.set(id, firstReading(zone, days * DAY));
  return starts.get(id);
}
const daysInMonth = (year, month) => new Date(Date.UTC(year, month, 0)).getUTCDate();

const cases = {};
const fixture = {};
function add(table, key, start, reset) {
  // A skipped day has no window; time starts at the epoch (the crate starts earlier windows
  // there).
  if (reset <= start || start < 0) return;
  (table[key] ??= []).push(start, reset - start);
}
const seen = new Set();
function window(key, start, reset, inFixture) {
  const id = `${key} ${start}`;
  if (seen.has(id)) return;
  seen.add(id);
  add(cases, key, start, reset);
  if (inFixture) add(fixture, key, start, reset);
}

const FROM = Date.UTC(1970, 0, 1) / 1000;
const TO = Date.UTC(2038, 0, 1) / 1000;
const FIXTURE_ZONES = ["America/Los_Angeles", "Europe/Paris", "Australia/Lord_Howe"];

for (const zone of ZONES) {
  const changes = transitions(zone, FROM, TO);
  // Zones without changes (Kolkata, Etc/GMT+5): the first days of each year.
  const days = new Set();
  for (let year = 1970; year < 2038; year++) days.add(dayNumber(year, 1, 1));
  const hourProbes = [];
  for (const at of changes) {
    const before = Math.floor((at - 1 + offset(zone, at - 1)) / DAY);
    const after = Math.floor((at + offset(zone, at)) / DAY);
    for (let day = before - 1; day <= after + 1; day++) days.add(day);
    for (let probe = at - 3 * 3600; probe <= at + 3 * 3600; probe += 900) hourProbes.push(probe);
  }
  for (const day of [...days].sort((a, b) => a - b)) {
    const [year] = civil(day);
    const fixed = FIXTURE_ZONES.includes(zone) && year >= 2000;
    window(`day@${zone}`, dayStart(zone, day), dayStart(zone, day + 1), fixed);
    const pair = Math.floor(day / 2) * 2;
    window(`2day@${zone}`, dayStart(zone, pair), dayStart(zone, pair + 2), false);
    const monday = day - ((day + 3) % 7); // 1970-01-01 was a Thursday
    window(`week@${zone}`, dayStart(zone, monday), dayStart(zone, monday + 7), false);
  }
  for (const [unit, length] of [["hour", 3600], ["30minute", 1800]]) {
    for (const probe of hourProbes) {
      const here = offset(zone, probe);
      const line = Math.floor((probe + here) / length) * length;
      let start = line - here;
      let reset = line + length - here;
      if (offset(zone, start) !== here) start = change(zone, start, probe);
      if (offset(zone, reset - 1) !== here) reset = change(zone, probe, reset - 1);
      const fixed = zone === "Australia/Lord_Howe" && unit === "hour" && probe >= Date.UTC(2020, 0, 1) / 1000;
      window(`${unit}@${zone}`, start, reset, fixed);
    }
  }
}

// Month windows from anchor days, every month of 400 years (2000-2399).
const monthStart = (zone, index, anchor) => {
  const year = 1970 + Math.floor(index / 12);
  const month = (index % 12) + 1;
  const day = dayNumber(year, month, Math.min(anchor, daysInMonth(year, month)));
  return zone === null ? day * DAY : dayStart(zone, day);
};
const first = (2000 - 1970) * 12;
const last = (2400 - 1970) * 12;
for (const zone of [null, "America/Los_Angeles", "Europe/Paris"]) {
  for (const anchor of [1, 15, 29, 30, 31]) {
    const key = `month${anchor === 1 ? "" : `+${anchor}`}${zone === null ? "" : `@${zone}`}`;
    for (let index = first; index < last; index++) {
      const fixed = zone !== null && anchor >= 29 && index < first + 150;
      window(key, monthStart(zone, index, anchor), monthStart(zone, index + 1, anchor), fixed);
    }
  }
}
// Quarters from the 31st in Paris: months since January 1970 divisible by 3.
for (let index = first; index < last; index += 3) {
  const zone = "Europe/Paris";
  window(`3month+31@${zone}`, monthStart(zone, index, 31), monthStart(zone, index + 3, 31), false);
}

const sorted = (table) => Object.fromEntries(Object.entries(table).sort(([a], [b]) => (a < b ? -1 : 1)));
if (process.argv.includes("--fixture")) {
  const lines = Object.entries(sorted(fixture)).map(([key, list]) => `  ${JSON.stringify(key)}: ${JSON.stringify(list)}`);
  process.stdout.write(`{\n${lines.join(",\n")}\n}\n`);
} else {
  process.stdout.write(JSON.stringify({ cases: sorted(cases), fixture: sorted(fixture) }));
}
