import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "raft",
    include: ["test/**/*.test.ts"],
  },
});
