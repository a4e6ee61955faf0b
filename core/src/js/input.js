// Reading a call count in one step: the common cases (omitted, or a number) cost one call from
// wasm. `NaN` stands for "not a number"; input.rs then looks closer to say what was wrong.

export function countOf(value) {
  if (value === undefined) return 1;
  return typeof value === "number" ? value : NaN;
}
