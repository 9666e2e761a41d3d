// Builds the web app into dist/: one JavaScript bundle and one stylesheet,
// both named by a hash of their content (served as immutable), and
// index.html naming them (served as no-cache). esbuild-wasm, not esbuild:
// the same bundler as WebAssembly, so no native binary is fetched and the
// build runs on any CPU Node runs on.
//
//   node build.mjs           build
//   node build.mjs --size    build, then print the bytes shipped (raw and gzip)
import { build } from "esbuild-wasm";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const dist = "dist";
await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "assets"), { recursive: true });

const result = await build({
  entryPoints: { app: "src/main.ts", style: "static/app.css" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  outdir: join(dist, "assets"),
  entryNames: "[name]-[hash]",
  metafile: true,
  sourcemap: false,
  legalComments: "linked",
  logLevel: "warning",
});

const outputs = Object.keys(result.metafile.outputs);
const named = (ext) => {
  const found = outputs.filter((path) => path.endsWith(ext) && !path.endsWith(".LEGAL.txt"));
  if (found.length !== 1) throw new Error(`expected one ${ext} output, got ${found}`);
  return "/" + found[0].slice(dist.length + 1);
};
const script = named(".js");
const style = named(".css");

let html = await readFile("static/index.html", "utf8");
html = html.replace("__APP_JS__", script).replace("__APP_CSS__", style);
await writeFile(join(dist, "index.html"), html);
await writeFile(join(dist, "favicon.svg"), await readFile("static/favicon.svg"));

// What the build was made from, for the deployment checks.
const version = createHash("sha256").update(html).digest("hex").slice(0, 12);
await writeFile(join(dist, "build.json"), JSON.stringify({ version, script, style }) + "\n");

if (process.argv.includes("--size")) {
  let raw = 0;
  let gzip = 0;
  for (const file of await readdir(join(dist, "assets"))) {
    if (!file.endsWith(".js")) continue;
    const bytes = await readFile(join(dist, "assets", file));
    raw += bytes.length;
    gzip += gzipSync(bytes, { level: 9 }).length;
  }
  console.log(JSON.stringify({ javascript_bytes: raw, javascript_gzip_bytes: gzip }));
}
