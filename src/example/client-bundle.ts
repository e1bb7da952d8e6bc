import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

let bundle: Promise<string> | undefined;

/**
 * `nestjs-ws-endpoints/client` as one ES module for the page, bundled once from the library's
 * source by the script that builds the package's `dist/client/client.mjs`.
 */
export function clientBundle(): Promise<string> {
  const script = pathToFileURL(
    join(__dirname, '../../scripts/build-client.mjs'),
  );
  return (bundle ??= import(script.href)
    .then(({ bundleClient }: { bundleClient: () => Promise<Uint8Array> }) =>
      bundleClient(),
    )
    .then((code) => Buffer.from(code).toString('utf8')));
}
