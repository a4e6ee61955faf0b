// Reading what JavaScript passes in. A call count is read in one step: the common cases
// (omitted, or a number) cost one call from wasm; `NaN` stands for "not a number". The error
// messages are built here too, where JavaScript's own formatting of its values comes for free.

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
      return Array.isArray(value) ? "an array" : "an object";
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

/** The first of `object`'s own keys not in `allowed` (names separated by ", "), or undefined. */
export function unknownKey(object, allowed) {
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

/**
 * One service's fields in SERVICE_FIELDS order (an optional one omitted or null as
 * undefined), or else a message naming the first one missing or of the wrong type, worded the
 * way serde words it: `missing field \`limit\``, `name: invalid type: number \`7.0\`, expected a
 * string`.
 */
export function serviceFields(service) {
  return fieldsOf(service, SERVICE_FIELDS);
}

/** One entry of `limits` in LIMIT_FIELDS order, as serviceFields answers. */
export function limitFields(limit) {
  return fieldsOf(limit, LIMIT_FIELDS);
}

function fieldsOf(object, table) {
  const fields = [];
  for (const [name, type, optional] of table) {
    let value;
    try {
      value = object[name];
    } catch {
      return `reading field "${name}" threw`;
    }
    if (value == null && optional) {
      fields.push(undefined);
    } else if (value === undefined) {
      return `missing field \`${name}\``;
    } else if (typeof value !== type) {
      const expected = type === "object" ? "an array" : `a ${type}`;
      return `${name}: invalid type: ${unexpected(value)}, expected ${expected}`;
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
