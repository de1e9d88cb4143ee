import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "riscv",
    include: ["test/**/*.test.ts"],
  },
});
