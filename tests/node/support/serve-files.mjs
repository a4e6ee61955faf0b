// Preloaded (`node --import`) by readme.test.mjs for the browser snippets: `fetch` of a `file:`
// URL answers with that file, as a web server answers a browser's request for it (Node's own
// `fetch` cannot read files). Each such fetch is reported on stderr as `fetched <path>`.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const realFetch = globalThis.fetch;
globalThis.fetch = async (input, options) => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (url.protocol !== "file:") return realFetch(input, options);
  const path = fileURLToPath(url);
  process.stderr.write(`fetched ${path}\n`);
  const type = path.endsWith(".wasm") ? "application/wasm" : "application/octet-stream";
  return new Response(await readFile(path), { headers: { "Content-Type": type } });
};
