import { build } from 'esbuild';
import { join } from 'node:path';

let bundle: Promise<string> | undefined;

/**
 * `nestjs-ws-endpoints/client` as one ES module for the page, bundled once from the library's
 * source (the package ships the same bundle as `dist/client/client.mjs`).
 */
export function clientBundle(): Promise<string> {
  return (bundle ??= build({
    entryPoints: [join(__dirname, '../../src/lib/client/index.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    minify: true,
    write: false,
  }).then(({ outputFiles }) => outputFiles[0].text));
}
