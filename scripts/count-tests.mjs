// Prints the one-line summary CI reads, from vitest's JSON report.
import { readFileSync } from "node:fs";

const path = process.argv[2] ?? ".reports/vitest.json";
let passed;
let failed;
try {
  const report = JSON.parse(readFileSync(path, "utf8"));
  passed = report.numPassedTests ?? 0;
  failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTests ?? 0);
  if (report.success === false && failed === 0) failed = 1; // a suite failed to load
} catch {
  failed = 1; // no report: the suite did not run
}
console.log(`tests: ${passed} passed, ${failed} failed`);
