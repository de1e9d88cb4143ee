import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "vmbus",
    include: ["test/**/*.test.ts"],
  },
});
