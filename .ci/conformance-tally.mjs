// Prints how the checks of one conformance run came out, for the README's
// figures: node conformance-tally.mjs LABEL DIR [SCENARIO...]
//
// DIR is the suite's -o folder: one server-<scenario>-<time>/checks.json
// per scenario run. With SCENARIOs, only those count (the scored scenarios
// of a requirement set). The line does not say "passed"/"failed": CI
// readers take such lines for test results, and the expected failures are
// in these counts.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [label, dir, ...only] = process.argv.slice(2);
const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

const counts = {};
let scenarios = 0;
for (const entry of readdirSync(dir)) {
  const scenario = RESULT_DIR.exec(entry)?.[1];
  if (!scenario || (only.length > 0 && !only.includes(scenario))) continue;
  scenarios++;
  for (const c of JSON.parse(readFileSync(join(dir, entry, 'checks.json'), 'utf8'))) {
    counts[c.status] = (counts[c.status] ?? 0) + 1;
  }
}
const order = ['SUCCESS', 'FAILURE', 'WARNING', 'SKIPPED', 'INFO'];
const parts = order.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`);
console.log(`${label}: ${scenarios} scenarios, checks: ${parts.join(', ') || 'none'}`);
