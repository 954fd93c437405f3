// Builds the page into dist/ (committed; embedded into the gateway):
//   node build.mjs           dist/index.html + dist/assets/main-<hash>.{js,css}
//   node build.mjs --check   fails when dist/ differs from a fresh build
//   node build.mjs --dev     rebuilds on change and serves the page on
//                            HGP_WEB_DEV_ADDR (default 127.0.0.1:5173),
//                            forwarding API calls to HGP_GATEWAY_URL
//                            (default http://127.0.0.1:8080)
import * as esbuild from "esbuild";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync, statSync } from "node:fs";
import { createServer, request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const mode = process.argv[2] ?? "";

const options = {
  absWorkingDir: root,
  entryPoints: ["src/main.ts", "src/style.css"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
};

// build writes the page into out/ and returns its file names.
async function build(out) {
  rmSync(out, { recursive: true, force: true });
  const res = await esbuild.build({
    ...options,
    outdir: join(out, "assets"),
    entryNames: "[name]-[hash]",
    metafile: true,
  });
  const names = {};
  for (const [file, meta] of Object.entries(res.metafile.outputs)) {
    const rel = relative(out, join(root, file)).split("\\").join("/");
    if (meta.entryPoint === "src/main.ts") names.js = rel;
    if (meta.entryPoint === "src/style.css") names.css = rel;
  }
  if (!names.js || !names.css) {
    throw new Error("build: missing outputs " + JSON.stringify(names));
  }
  writeFileSync(join(out, "index.html"), page(names.js, names.css));
  return names;
}

function page(js, css) {
  return readFileSync(join(root, "index.html"), "utf8").replace("%JS%", js).replace("%CSS%", css);
}

function listFiles(dir, prefix = "") {
  let out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(listFiles(p, prefix + name + "/"));
    else out.push(prefix + name);
  }
  return out;
}

async function check() {
  const tmp = mkdtempSync(join(tmpdir(), "hgp-web-"));
  try {
    await build(tmp);
    const fresh = listFiles(tmp);
    let committed = [];
    try {
      committed = listFiles(join(root, "dist"));
    } catch {
      // no dist/ yet
    }
    const problems = [];
    for (const f of new Set([...fresh, ...committed])) {
      if (!fresh.includes(f)) problems.push(`web/dist/${f}: not produced by the build (remove it)`);
      else if (!committed.includes(f)) problems.push(`web/dist/${f}: missing (run npm run build and commit web/dist)`);
      else if (!readFileSync(join(tmp, f)).equals(readFileSync(join(root, "dist", f)))) problems.push(`web/dist/${f}: differs from a fresh build`);
    }
    if (problems.length > 0) {
      console.error("web/dist is not what `npm run build` produces from web/src:\n  " + problems.join("\n  "));
      process.exit(1);
    }
    console.log(`web/dist is up to date (${fresh.length} files)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function dev() {
  const gateway = new URL(process.env.HGP_GATEWAY_URL ?? "http://127.0.0.1:8080");
  const [host, port] = (process.env.HGP_WEB_DEV_ADDR ?? "127.0.0.1:5173").split(":");
  const out = mkdtempSync(join(tmpdir(), "hgp-web-dev-"));
  mkdirSync(join(out, "assets"), { recursive: true });
  const ctx = await esbuild.context({
    ...options,
    minify: false,
    sourcemap: "inline",
    outdir: join(out, "assets"),
    entryNames: "[name]",
    logLevel: "info",
  });
  await ctx.watch();
  const assets = await ctx.serve({ host: "127.0.0.1", port: 0, servedir: out });
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && (path === "/" || path === "/index.html")) {
      res.writeHead(200, { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache" });
      res.end(page("assets/main.js", "assets/style.css"));
      return;
    }
    const target = path.startsWith("/assets/") ? { hostname: "127.0.0.1", port: assets.port } : { hostname: gateway.hostname, port: gateway.port || 80 };
    const headers = { ...req.headers, host: `${target.hostname}:${target.port}` };
    const up = request({ ...target, path: req.url, method: req.method, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      res.flushHeaders();
      upRes.pipe(res);
    });
    up.on("error", (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { "Content-Type": "text/plain" });
      }
      res.end(`gateway at ${gateway.origin} unreachable: ${err.message}`);
    });
    req.pipe(up);
    res.on("close", () => up.destroy());
  });
  server.listen(Number(port), host, () => {
    console.log(`page: http://${host}:${port}/  (rebuilds on change; API calls go to ${gateway.origin})`);
    console.log(`signed in as the standalone dev user: http://${host}:${port}/#token=<token printed by the gateway>`);
  });
}

if (mode === "--check") await check();
else if (mode === "--dev") await dev();
else if (mode === "") {
  const names = await build(join(root, "dist"));
  console.log(`web/dist: index.html, ${names.js}, ${names.css}`);
} else {
  console.error(`unknown mode ${mode}: use --check or --dev`);
  process.exit(2);
}
