// With the DOM library (a browser project), init takes what `fetch` and `new URL` give.
import init from "quota-core";

export async function load(): Promise<void> {
  await init({ module_or_path: fetch("/quota_core_bg.wasm") });
  await init({ module_or_path: new URL("quota_core_bg.wasm", import.meta.url) });
  await init({ module_or_path: new Request("/quota_core_bg.wasm") });
}
