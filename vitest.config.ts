import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: ["packages/*", "services/*", "test"],
    reporters: ["default", "json"],
    outputFile: { json: ".reports/vitest.json" },
  },
});
