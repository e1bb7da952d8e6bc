// Writes the files of the README's "Using it in your app" section into an app: each code block
// whose first line is a path comment (`// src/app.module.ts`) is that whole file. A `.ts` file is
// written whatever the app has; any other file (a config) only replaces one the app already has,
// so the CJS variant's `test/jest-e2e.json` is not written into the ESM app.
// usage: node scripts/readme-files.mjs README.md <app directory>
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [readme, app] = process.argv.slice(2);
const text = readFileSync(readme, 'utf8');
const section = /^## Using it in your app\n([\s\S]*?)(?=^## )/m.exec(text)?.[1];
if (!section) throw new Error(`${readme} has no "## Using it in your app" section.`);

const files = [...section.matchAll(/^```\w*\n\/\/ ([\w./-]+)\n[\s\S]*?^```$/gm)];
if (files.length === 0) throw new Error(`No file blocks in the "Using it in your app" section of ${readme}.`);
for (const [block, path] of files) {
  const target = join(app, path);
  if (!path.endsWith('.ts') && !existsSync(target)) {
    console.log(`skipped ${path} (the app has none)`);
    continue;
  }
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, block.slice(block.indexOf('\n') + 1, block.lastIndexOf('```')));
  console.log(`wrote ${path}`);
}
