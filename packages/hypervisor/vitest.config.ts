import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "hypervisor",
    include: ["test/**/*.test.ts"],
  },
});
