// The services' names in a JS Map, so that finding a service from JavaScript passes no string
// into wasm (encoding and copying it costs more than the rest of a `recordCall`).

export function nameMap(names, positions) {
  return new Map(names.map((name, index) => [name, positions[index]]));
}

export function findName(index, name) {
  return index.get(name) ?? -1;
}

// A call's service and count (and the time) in one answer, for as few calls out of wasm as
// possible:
// - count omitted or 1: position + 64 x Date.now() (>= 0), the time the tracker then reads
//   (Date.now() costs less here than a call out of wasm);
// - another whole count: -2 - (position + 64 x count) (wasm reads the time itself);
// - otherwise -1: no service's name, a position from 64 on, a count that is not a whole number
//   (or too large to pack exactly): wasm looks at the name and the count itself.
export function findCall(index, name, count) {
  const position = index.get(name);
  if (position === undefined || position >= 64) return -1;
  if (count === undefined || count === 1) {
    const now = Date.now();
    if (Number.isSafeInteger(now) && now >= 0 && now < 2 ** 46) return position + 64 * now;
    count = 1;
  }
  if (Number.isSafeInteger(count) && count >= 1 && count < 2 ** 46) {
    return -2 - (position + 64 * count);
  }
  return -1;
}
