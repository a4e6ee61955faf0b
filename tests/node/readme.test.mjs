// The README's JavaScript and TypeScript, as a new user meets them: every ```js and ```ts block
// of README.md is a file in readme/ (byte for byte), run, or compiled and run, in a project
// made by the README's own commands (`npm init -y`, `npm pkg set type=module`, `npm install
// path/to/pkg`; for TypeScript its `npm install --save-dev ...` and `npx tsc ...` lines),
// printing what its `// → ...` comments say; and the declarations type-check with
// `tsc --strict` and `lib: ["es2022"]` alone.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const root = here("../../");
const pkg = join(root, "pkg");
const snippets = here("readme/");
const tsc = here("node_modules/typescript/bin/tsc");
const preload = (name) => ["--import", new URL(`support/${name}`, import.meta.url).href];

/** The README's fenced blocks in `languages`, each with the line above its fence. */
function readmeBlocks(languages) {
  const lines = readFileSync(join(root, "README.md"), "utf8").split("\n");
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)/.exec(lines[i]);
    if (!fence) continue;
    const end = lines.indexOf("```", i + 1);
    assert.ok(end > i, `README.md: the block at line ${i + 1} is not closed`);
    if (languages.includes(fence[1])) {
      const body = lines.slice(i + 1, end).join("\n") + "\n";
      blocks.push({ line: i + 1, language: fence[1], above: lines[i - 1] ?? "", body });
    }
    i = end;
  }
  return blocks;
}

/** What the `// → ...` comments of `source` say it prints, in order. */
function expectedOutput(source) {
  return [...source.matchAll(/\/\/ → (.*)$/gm)].map((match) => match[1]);
}

/** Runs `node [args] file` in `dir`; its stdout lines, after checking it succeeded. */
function node(dir, args, file) {
  const run = spawnSync(process.execPath, [...args, file], { cwd: dir, encoding: "utf8", timeout: 60_000 });
  assert.equal(run.status, 0, `node ${file} failed:\n${run.stderr}`);
  return { stdout: run.stdout.split("\n").slice(0, -1), stderr: run.stderr };
}

let project;

/** Runs `command` with bash in `dir`; its stdout, after checking it succeeded. */
function shell(dir, command) {
  const run = spawnSync("bash", ["-euo", "pipefail", "-c", command], { cwd: dir, encoding: "utf8", timeout: 300_000 });
  assert.equal(run.status, 0, `${command} failed in ${dir}:\n${run.stdout}${run.stderr}`);
  return run.stdout;
}

/** The README's `sh` block that contains `marker`, its lines. */
function readmeCommands(marker) {
  const block = readmeBlocks(["sh"]).find((block) => block.body.includes(marker));
  assert.ok(block, `README.md has no sh block with ${marker}`);
  return block.body.trim().split("\n");
}

before(() => {
  // A user's project, made with the README's own commands (npm init -y, npm pkg set
  // type=module, npm install path/to/quota/pkg); pkg/ is built already.
  const parent = mkdtempSync(join(tmpdir(), "quota-readme-"));
  const steps = readmeCommands("npm init -y").filter((line) => !line.startsWith("cargo xtask pkg"));
  assert.ok(steps.some((line) => line.includes("path/to/quota/pkg")), steps.join("\n"));
  shell(parent, steps.join("\n").replaceAll("path/to/quota/pkg", pkg));
  project = join(parent, "my-app");
  for (const name of readdirSync(snippets)) copyFileSync(join(snippets, name), join(project, name));
  // The type-check consumers too, so that "quota-core" resolves from the project.
  mkdirSync(join(project, "types"));
  for (const name of readdirSync(here("types/"))) {
    if (name.endsWith(".ts")) copyFileSync(here(`types/${name}`), join(project, "types", name));
  }
});

after(() => {
  if (project) rmSync(join(project, ".."), { recursive: true, force: true });
});

test("every JavaScript and TypeScript block of the README is a file in tests/node/readme/, byte for byte", () => {
  const blocks = readmeBlocks(["js", "javascript", "mjs", "ts", "typescript"]);
  const files = readdirSync(snippets).sort();
  assert.ok(blocks.length >= 3, "the README shows Node, browser and TypeScript use");
  const shown = [];
  for (const block of blocks) {
    const marker = /^<!-- tests\/node\/readme\/([\w.-]+) -->$/.exec(block.above);
    assert.ok(marker, `README.md line ${block.line}: a ${block.language} block needs <!-- tests/node/readme/FILE --> above it`);
    const name = marker[1];
    assert.ok(files.includes(name), `README.md line ${block.line}: no tests/node/readme/${name}`);
    assert.equal(block.body, readFileSync(join(snippets, name), "utf8"), `README.md line ${block.line} differs from tests/node/readme/${name}`);
    shown.push(name);
  }
  assert.deepEqual(shown.sort(), files, "each file in tests/node/readme/ is shown in the README once");
});

test("the package is installed from pkg/ as the README says, in an ES module project", () => {
  const installed = JSON.parse(readFileSync(join(project, "package.json"), "utf8"));
  assert.equal(installed.name, "my-app", "npm init -y names it after its folder");
  assert.equal(installed.type, "module");
  assert.match(installed.dependencies["quota-core"], /^file:/);
  assert.equal(realpathSync(join(project, "node_modules/quota-core")), realpathSync(pkg));
});

test("README, Node: runs in the user's project and prints what its comments say", () => {
  const source = readFileSync(join(snippets, "node.mjs"), "utf8");
  const { stdout } = node(project, preload("fixed-time.mjs"), "node.mjs");
  assert.deepEqual(stdout, expectedOutput(source));
});

test("README, holds: runs in the user's project and prints what its comments say", () => {
  const source = readFileSync(join(snippets, "holds.mjs"), "utf8");
  const { stdout } = node(project, preload("fixed-time.mjs"), "holds.mjs");
  assert.deepEqual(stdout, expectedOutput(source));
});

test("README, browsers: init() fetches the .wasm from beside the module, then prints what its comments say", () => {
  const source = readFileSync(join(snippets, "browser.mjs"), "utf8");
  const { stdout, stderr } = node(project, [...preload("fixed-time.mjs"), ...preload("serve-files.mjs")], "browser.mjs");
  assert.deepEqual(stdout, expectedOutput(source));
  assert.deepEqual(stderr.trim().split("\n"), [`fetched ${join(realpathSync(pkg), "quota_core_bg.wasm")}`]);
});

test("without the .wasm, init() in Node fails as the README says (the reason it shows initSync)", () => {
  // `await init()` with no argument: Node's fetch cannot read the file: URL.
  writeFileSync(join(project, "plain-init.mjs"), 'import init from "quota-core";\nawait init();\n');
  const run = spawnSync(process.execPath, ["plain-init.mjs"], { cwd: project, encoding: "utf8" });
  assert.notEqual(run.status, 0);
  assert.match(run.stderr, /fetch failed|not implemented/);
});

/** Runs tsc in the project with a tsconfig extending types/tsconfig.json plus `overrides`. */
function typeCheck(name, overrides) {
  const config = join(project, `tsconfig.${name}.json`);
  writeFileSync(config, JSON.stringify({ extends: here("types/tsconfig.json"), ...overrides }, null, 2));
  const run = spawnSync(process.execPath, [tsc, "-p", config], { cwd: project, encoding: "utf8", timeout: 120_000 });
  assert.equal(run.status, 0, `tsc -p ${name}:\n${run.stdout}${run.stderr}`);
}

test("tsc --strict, lib es2022 alone (no DOM, no @types/node): the declarations and types/api.ts", () => {
  const files = ["types/api.ts", "types/console.d.ts", "types/no-dom.ts"];
  // Node's resolution (the package's "exports") and a bundler's.
  typeCheck("nodenext", { files });
  typeCheck("bundler", { compilerOptions: { module: "es2022", moduleResolution: "bundler" }, files });
});

test("tsc --strict with the DOM library: init takes a fetch, a URL and a Request", () => {
  typeCheck("dom", {
    compilerOptions: { lib: ["es2022", "dom"] },
    files: ["types/api.ts", "types/dom.ts"],
  });
});

test("README, TypeScript: compiled and run with the README's own commands, prints what its comments say", () => {
  const source = readFileSync(join(snippets, "usage.ts"), "utf8");
  const [install, compileAndRun, ...rest] = readmeCommands("npx tsc");
  assert.deepEqual(rest, []);
  assert.match(install, /^npm install --save-dev typescript@\S+ @types\/node@\S+$/);
  shell(project, install);
  const stdout = shell(project, compileAndRun);
  assert.deepEqual(stdout.split("\n").slice(0, -1), expectedOutput(source));
});

test("README, TypeScript: in a CommonJS project (npm init -y alone) tsc refuses it, which is why the README sets type=module", () => {
  const parent = mkdtempSync(join(tmpdir(), "quota-readme-cjs-"));
  try {
    shell(parent, `mkdir cjs && cd cjs && npm init -y >/dev/null && npm install --no-audit --no-fund ${pkg} >/dev/null`);
    const dir = join(parent, "cjs");
    copyFileSync(join(snippets, "usage.ts"), join(dir, "usage.ts"));
    // The same compiler as the README's, from the project above.
    const tsc = join(project, "node_modules/typescript/bin/tsc");
    const types = join(project, "node_modules/@types");
    const run = spawnSync(process.execPath, [tsc, "--strict", "--target", "es2022", "--module", "nodenext", "--typeRoots", types, "--types", "node", "usage.ts"], { cwd: dir, encoding: "utf8" });
    assert.notEqual(run.status, 0);
    assert.match(run.stdout, /TS1309|TS1378|CommonJS/, run.stdout);
  } finally {
    rmSync(parent, { recursive: true, force: true });
  }
});
