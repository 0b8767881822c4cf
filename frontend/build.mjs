// Bundle the browser code into static/build/ (git-ignored; run by `npm run build`).
//
// NiiVue's ESM build imports bare package names (gl-matrix, fflate, ...), which a
// browser cannot resolve from node_modules, so every entry point is bundled with its
// dependencies into one self-contained file that Django serves as a static asset.
import { build } from "esbuild";
import { rm, mkdir, readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import path from "node:path";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const outdir = path.join(root, "static", "build");

await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });

// Every top-level file in frontend/src is a page's entry point (study.js -> static/build/study.js);
// shared modules live in frontend/src/lib/.
const entryPoints = Object.fromEntries(
  (await readdir(path.join(root, "frontend", "src")))
    .filter((name) => name.endsWith(".js"))
    .map((name) => [name.slice(0, -3), `frontend/src/${name}`]),
);

const result = await build({
  absWorkingDir: root,
  entryPoints,
  outdir,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: "es2020",
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  metafile: true,
  logLevel: "warning",
  // zarrita (NiiVue's OME-Zarr reader) loads its compression codecs with dynamic
  // import(); they are ~1.3 MB of inlined WebAssembly that NIfTI viewing never uses.
  // Left external, the import() stays in the bundle and would only fail for Zarr data.
  external: ["numcodecs", "numcodecs/*"],
});

for (const [file, info] of Object.entries(result.metafile.outputs)) {
  console.log(`${path.relative(root, file)}  ${(info.bytes / 1024).toFixed(1)} KiB`);
}
