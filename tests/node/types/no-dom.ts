// Without the DOM library the init functions take bytes, a URL string or nothing else (with it,
// `WebAssembly.Module` is an empty interface that any value fits).
import init, { initSync } from "quota-core";

export async function refused(): Promise<void> {
  // @ts-expect-error: a number is no module
  initSync({ module: 5 });
  // @ts-expect-error: a number is no module or path
  await init({ module_or_path: 5 });
}
