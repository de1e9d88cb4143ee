export { runCommand, UsageError } from "./run.js";
export { parseSize } from "./size.js";
