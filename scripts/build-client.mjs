// Bundles nestjs-ws-endpoints/client into one minified ES module for browsers,
// dist/client/client.mjs, and prints its size (raw, and gzipped as a server would send it).
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist/client/client.mjs');

export async function bundleClient() {
  const { outputFiles } = await build({
    entryPoints: [join(root, 'src/lib/client/index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    write: false,
    logLevel: 'silent',
  });
  return outputFiles[0].contents;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const code = await bundleClient();
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code);
  const kib = (bytes) => (bytes / 1024).toFixed(2);
  console.log(
    `client: ${kib(code.length)} KiB minified, ${kib(gzipSync(code, { level: 9 }).length)} KiB gzipped (dist/client/client.mjs)`,
  );
}
