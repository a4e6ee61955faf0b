// Reading what JavaScript passes in. A call count is read in one step: the common cases
// (omitted, or a number) cost one call from wasm; `NaN` stands for "not a number". A config's
// shape is checked here in one call per service (`configOf`, `serviceOf`), and its messages
// built here too, where JavaScript's own formatting of its values comes for free; input.rs
// reads what they answer.

export function countOf(value) {
  if (value === undefined) return 1;
  return typeof value === "number" ? value : NaN;
}

/** A short description of a JS value for error messages: `5`, `the string "a"`, `an array`. */
export function describe(value) {
  switch (typeof value) {
    case "number":
    case "boolean":
    case "undefined":
      return String(value);
    case "string":
      return `the string ${JSON.stringify(value)}`;
    case "function":
      return "a function";
    case "bigint":
      return "a bigint";
    case "symbol":
      return "a symbol";
    default:
      if (value === null) return "null";
      return isArray(value) ? "an array" : "an object";
  }
}

/**
 * `Array.isArray(value)`, false where that throws (a revoked Proxy): what wasm calls must not
 * throw, for an exception through wasm leaves the tracker borrowed.
 */
function isArray(value) {
  try {
    return Array.isArray(value);
  } catch {
    return false;
  }
}

/** The Error for a count that is not a whole number from 1 to Number.MAX_SAFE_INTEGER. */
export function countError(service, value) {
  let problem;
  if (typeof value !== "number") problem = "count must be a number";
  else if (!Number.isFinite(value)) problem = "count must be a finite number";
  else if (!Number.isInteger(value)) problem = "count must be a whole number";
  else if (value < 1) problem = "count must be at least 1";
  else problem = "count must not exceed Number.MAX_SAFE_INTEGER (9007199254740991)";
  return new Error(
    `invalid count for service ${JSON.stringify(service)}: ${problem} (got ${describe(value)})`,
  );
}

/**
 * `tryRecordMany`'s calls, `[[service, count], ...]` or `{ [service]: count }`, flattened to
 * `[service, count, ...]`; a message (a string) for the first problem of their shape, or
 * `[thrown]` when reading them threw (a getter, a proxy's trap): input.rs throws it, after
 * wasm let go of the tracker (an exception through wasm would leave it borrowed).
 */
export function callsOf(calls) {
  try {
    return flatCalls(calls);
  } catch (error) {
    return [error];
  }
}

function flatCalls(calls) {
  const shape = "tryRecordMany needs an array of [service, count] pairs or an object of counts";
  if (calls === null || typeof calls !== "object") return `${shape} (got ${describe(calls)})`;
  const pairs = Array.isArray(calls) ? calls : Object.entries(calls);
  const flat = [];
  for (const [index, pair] of pairs.entries()) {
    if (!Array.isArray(pair) || pair.length !== 2) {
      return `${shape}: entry ${index} is ${describe(pair)}${Array.isArray(pair) ? ` of length ${pair.length}` : ""}`;
    }
    flat.push(pair[0], pair[1]);
  }
  return flat;
}

/** The first of `object`'s own keys not in `allowed` (names separated by ", "), or undefined. */
function unknownKey(object, allowed) {
  const names = allowed.split(", ");
  return Object.keys(object).find((key) => !names.includes(key));
}

// One service's fields: name, type, and whether it may be omitted (or null). `limit` and
// `period` are required unless `limits` is given (input.rs checks which).
const SERVICE_FIELDS = [
  ["name", "string"],
  ["limit", "number", true],
  ["period", "string", true],
  ["warnThreshold", "number", true],
  ["criticalThreshold", "number", true],
  ["reserveFraction", "number", true],
  ["enforce", "boolean", true],
  ["every", "number", true],
  ["timezone", "string", true],
  ["anchorDay", "number", true],
  ["limits", "object", true],
];

// One entry of a service's `limits`, as SERVICE_FIELDS.
const LIMIT_FIELDS = [
  ["limit", "number"],
  ["period", "string"],
  ["every", "number", true],
  ["timezone", "string", true],
  ["anchorDay", "number", true],
  ["warnThreshold", "number", true],
  ["criticalThreshold", "number", true],
  ["enforce", "boolean", true],
];

const MAX_SAFE_INTEGER = 9007199254740991;
const STORAGE_NAMES = "key, syncIntervalMs, required";

/**
 * The config `{ services, storage? }`, its shape checked: a message for the first problem
 * (without "invalid config: "), or its services array (each read by `serviceOf`; `storage` is
 * read by `storageOf` after every service, as it always was).
 */
export function configOf(config) {
  try {
    return readConfig(config);
  } catch {
    // A proxy's trap: thrown here, it would leave wasm (and a reconfigured tracker) borrowed.
    return "reading the config threw";
  }
}

function readConfig(config) {
  if (!isPlainObject(config)) {
    return `expected an object like { services: [...] } (got ${describe(config)})`;
  }
  const unknown = unknownKey(config, "services, storage");
  if (unknown !== undefined) {
    return `the config: unknown field ${quote(unknown)}; expected services, storage`;
  }
  const services = read(config, "services");
  if (typeof services === "string") return services;
  if (services.value === undefined) {
    return `missing field "services": list the services to track`;
  }
  if (!isArray(services.value)) {
    return `"services" must be an array (got ${describe(services.value)})`;
  }
  if (services.value.length === 0) return `"services" is empty: list at least one service`;
  // A copy: input.rs reads its entries, and a proxy's trap must not throw there.
  return Array.prototype.slice.call(services.value);
}

/** `{ value }` of field `name`, or the message when reading it throws (a getter, a proxy). */
function read(object, name) {
  try {
    return { value: object[name] };
  } catch {
    return `reading field "${name}" threw`;
  }
}

/**
 * The config's `storage` as `[key, syncIntervalMs, required]` (an omitted one as undefined),
 * undefined when omitted, or the message of its first problem.
 */
export function storageOf(config) {
  try {
    return readStorage(config);
  } catch {
    return "reading storage threw";
  }
}

function readStorage(config) {
  const storage = read(config, "storage");
  if (typeof storage === "string") return storage;
  const value = storage.value;
  if (value === undefined) return undefined;
  if (!isPlainObject(value)) {
    return `"storage" must be an object like { key: "my-app" } (got ${describe(value)})`;
  }
  const unknown = unknownKey(value, STORAGE_NAMES);
  if (unknown !== undefined) {
    return `storage: unknown field ${quote(unknown)}; expected ${STORAGE_NAMES}`;
  }
  const key = read(value, "key");
  if (typeof key === "string") return key;
  if (typeof key.value !== "string" || key.value === "") {
    return `storage.key must be a non-empty string naming the localStorage entry (got ${describe(key.value)})`;
  }
  const interval = read(value, "syncIntervalMs");
  if (typeof interval === "string") return interval;
  const ms = interval.value;
  if (ms !== undefined && !(typeof ms === "number" && Number.isInteger(ms) && ms >= 0 && ms <= MAX_SAFE_INTEGER)) {
    return `storage.syncIntervalMs must be a whole number of milliseconds from 0 to Number.MAX_SAFE_INTEGER (got ${describe(ms)})`;
  }
  const required = read(value, "required");
  if (typeof required === "string") return required;
  if (required.value !== undefined && typeof required.value !== "boolean") {
    return `storage.required must be true or false (got ${describe(required.value)})`;
  }
  return [key.value, ms, required.value];
}

const SERVICE_NAMES = names(SERVICE_FIELDS);
const LIMIT_NAMES = names(LIMIT_FIELDS);

function names(table) {
  return table.map(([name]) => name).join(", ");
}

/**
 * `text` in double quotes as input.rs quotes a name it has read (`JSON.stringify` of a Rust
 * string): a lone surrogate, which a Rust string cannot hold, as U+FFFD.
 */
function quote(text) {
  return JSON.stringify(
    text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, "\ufffd"),
  );
}

/** An object with fields: not null, not an array, not a function. */
function isPlainObject(value) {
  return typeof value === "object" && value !== null && !isArray(value);
}

/**
 * Service `index` of a JS config, its shape checked here, in the order input.rs reads it: a
 * message for the first problem (without "invalid config: "), or its fields: `[name,
 * warnThreshold, criticalThreshold, reserveFraction, enforce, listed]` (an omitted one as
 * undefined; `listed`: whether `limits` was given), then one group of LIMIT_SLOTS per limit
 * (the service's own when `limits` is not given): `[at, early, limit, period, every, timezone,
 * anchorDay, warnThreshold, criticalThreshold, enforce, late]`. `at` names the limit in
 * messages; `early` is the problem found before its period is read (its shape, fields or
 * count, as a message, or `[thrown]` when reading the entry threw: the group is then the
 * last), `late` one found after (`every`, `anchorDay`): input.rs reads the period between the
 * two, so every message comes in the order it always did.
 */
export function serviceOf(service, index) {
  try {
    return readService(service, index);
  } catch {
    return `services[${index}]: reading it threw`;
  }
}

function readService(service, index) {
  let at = `services[${index}]`;
  if (!isPlainObject(service)) {
    return `${at} must be an object like { name, limit, period } (got ${describe(service)})`;
  }
  const fields = fieldsOf(service, SERVICE_FIELDS, SERVICE_NAMES, at);
  if (typeof fields === "string") return fields;
  const [name, limit, period, warn, critical, reserve, enforce, every, timezone, anchorDay, listed] =
    fields;
  if (listed === undefined) {
    // One limit: `limit` and `period` are required, as serde words it in a file.
    if (limit === undefined) return `${at}: missing field \`limit\``;
    if (period === undefined) return `${at}: missing field \`period\``;
  }
  at = `${at} (${quote(name)})`;
  const out = [name, warn, critical, reserve, enforce, listed !== undefined];
  if (listed === undefined) {
    limitGroup(out, at, [limit, period, every, timezone, anchorDay]);
    return out;
  }
  const inside = [
    ["limit", limit],
    ["period", period],
    ["every", every],
    ["timezone", timezone],
    ["anchorDay", anchorDay],
  ].find(([, value]) => value !== undefined);
  if (inside) return `${at}: ${inside[0]} goes inside \`limits\` when that is given`;
  if (!isArray(listed)) {
    return `${at}: limits must be an array of { limit, period } (got ${describe(listed)})`;
  }
  for (let entry = 0; ; entry++) {
    const place = `${at}: limits[${entry}]`;
    // `early`: a message, or `[thrown]` for an exception (a proxy's trap, a getter) that
    // input.rs throws when it reaches this entry, after the entries before it.
    let early;
    let fields;
    try {
      if (entry >= listed.length) break;
      const value = listed[entry];
      if (!isPlainObject(value)) {
        early = `${place} must be an object like { limit, period } (got ${describe(value)})`;
      } else {
        fields = fieldsOf(value, LIMIT_FIELDS, LIMIT_NAMES, place);
        if (typeof fields === "string") early = fields;
      }
    } catch (error) {
      early = [error];
    }
    if (early !== undefined) {
      out.push(place, early, undefined, undefined, undefined, undefined, undefined);
      out.push(undefined, undefined, undefined, undefined);
      return out;
    }
    if (!limitGroup(out, place, fields)) return out;
  }
  return out;
}

/**
 * Appends the group of one limit from `fields` (`[limit, period, every, timezone, anchorDay,
 * warnThreshold?, criticalThreshold?, enforce?]`); false when it ends the service (an early
 * problem).
 */
function limitGroup(out, at, [limit, period, every, timezone, anchorDay, warn, critical, enforce]) {
  const early = Number.isInteger(limit) && limit >= 1 && limit <= MAX_SAFE_INTEGER
    ? undefined
    : `${at}: limit must be a positive integer (got ${describe(limit)})`;
  // `every` and `anchorDay`: whole numbers (the window spec checks their range).
  const whole = (value) => value === undefined || (Number.isInteger(value) && value >= 0 && value <= 4294967295);
  let late;
  if (!whole(every)) late = `${at}: every must be a whole number (got ${describe(every)})`;
  else if (!whole(anchorDay)) late = `${at}: anchorDay must be a whole number (got ${describe(anchorDay)})`;
  out.push(at, early, limit, period, every, timezone, anchorDay, warn, critical, enforce, late);
  return early === undefined;
}

/**
 * `object`'s fields in `table` order (an optional one omitted or null as undefined), or else a
 * message for the first unknown key (`allowed` lists the known ones), missing field or field
 * of the wrong type, after `at: `, worded the way serde words it: `missing field \`limit\``,
 * `name: invalid type: number \`7.0\`, expected a string`.
 */
function fieldsOf(object, table, allowed, at) {
  const unknown = unknownKey(object, allowed);
  if (unknown !== undefined) {
    return `${at}: unknown field ${quote(unknown)}; expected ${allowed}`;
  }
  const fields = [];
  for (const [name, type, optional] of table) {
    let value;
    try {
      value = object[name];
    } catch {
      return `${at}: reading field "${name}" threw`;
    }
    if (value == null && optional) {
      fields.push(undefined);
    } else if (value === undefined) {
      return `${at}: missing field \`${name}\``;
    } else if (typeof value !== type) {
      const expected = type === "object" ? "an array" : `a ${type}`;
      return `${at}: ${name}: invalid type: ${unexpected(value)}, expected ${expected}`;
    } else {
      fields.push(value);
    }
  }
  return fields;
}

/** A value of the wrong type, in serde's words: `number \`7.0\``, `string "5"`, `null`. */
function unexpected(value) {
  switch (typeof value) {
    case "number":
      return `number \`${Number.isInteger(value) ? value.toFixed(1) : value}\``;
    case "string":
      return `string ${JSON.stringify(value)}`;
    case "boolean":
      return `boolean \`${value}\``;
    default:
      return describe(value);
  }
}
