// The size budget of what every visit downloads before the first screen: the entry script,
// the chunks index.html preloads with it, and the stylesheet, gzipped as the gateway sends
// them. Screens are split by route and load on demand, so they are not counted here.
// Prints the figure; exits 1 over the budget. Run after `vite build`.
import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';

const BUDGET_BYTES = 100 * 1024;
const dist = new URL('../dist/', import.meta.url);
const html = await readFile(new URL('index.html', dist), 'utf8');
const assets = [
  ...html.matchAll(/<script[^>]+src="\/([^"]+\.js)"/g),
  ...html.matchAll(/<link[^>]+rel="modulepreload"[^>]+href="\/([^"]+\.js)"/g),
  ...html.matchAll(/<link[^>]+rel="stylesheet"[^>]+href="\/([^"]+\.css)"/g),
].map((match) => match[1]);

let total = 0;
for (const asset of new Set(assets)) {
  const size = gzipSync(await readFile(new URL(asset, dist)), { level: 9 }).length;
  total += size;
  console.log(`  ${asset}: ${(size / 1024).toFixed(1)} kB gzipped`);
}
const figure = `${(total / 1024).toFixed(1)} kB gzipped (budget ${BUDGET_BYTES / 1024} kB)`;
if (assets.length === 0) {
  console.error('No entry script found in dist/index.html: run `vite build` first.');
  process.exit(1);
}
if (total > BUDGET_BYTES) {
  console.error(`Main bundle: ${figure}: over budget.`);
  process.exit(1);
}
console.log(`Main bundle: ${figure}.`);
