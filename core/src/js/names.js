// The services' names in a JS Map, so that finding a service from JavaScript passes no string
// into wasm (encoding and copying it costs more than the rest of a `recordCall`).

export function nameIndex(names) {
  return new Map(names.map((name, index) => [name, index]));
}

export function findName(index, name) {
  return index.get(name) ?? -1;
}
