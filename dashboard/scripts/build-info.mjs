// Writes build-info.json beside the build: a sha256 over the dashboard's sources, so a Python test
// (coordinator/tests/test_dashboard_build.py, which computes the same digest) can check that the
// committed build is the build of the current sources.
//
// Digest: the sources are every file under src/ and scripts/, plus index.html, package.json,
// package-lock.json, tsconfig*.json and *.config.{js,mjs,cjs,ts} at the top; sorted by their
// POSIX path relative to dashboard/; sha256 over "<path>\0<sha256 hex of its bytes>\n" per file.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const out = join(root, "..", "coordinator", "dashboard_dist", "build-info.json");
const TOP = /^(index\.html|package\.json|package-lock\.json|tsconfig.*\.json|.*\.config\.(js|mjs|cjs|ts))$/;

function walk(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

const files = [
  ...readdirSync(root).filter((name) => TOP.test(name) && statSync(join(root, name)).isFile()).map((n) => join(root, n)),
  ...walk(join(root, "src")),
  ...walk(join(root, "scripts")),
]
  .map((path) => relative(root, path).split(sep).join("/"))
  .sort();

const digest = createHash("sha256");
for (const path of files) {
  const fileHash = createHash("sha256").update(readFileSync(join(root, path))).digest("hex");
  digest.update(`${path}\0${fileHash}\n`);
}
const info = { sources_sha256: digest.digest("hex"), files: files.length };
writeFileSync(out, JSON.stringify(info, null, 2) + "\n");
console.log(`build-info.json: ${info.sources_sha256} over ${info.files} files`);
