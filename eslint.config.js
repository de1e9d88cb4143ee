import js from "@eslint/js";
import globals from "globals";
import tseslint from "typescript-eslint";

// Time and randomness are injected into packages, never read: only adapters and
// services touch clocks, timers and random sources.
const noAmbientTimeOrRandomness = {
  "no-restricted-properties": [
    "error",
    { object: "Date", property: "now", message: "inject a Clock" },
    { object: "Math", property: "random", message: "inject a seeded Rng" },
    { object: "performance", property: "now", message: "inject a Clock" },
    { object: "crypto", property: "randomBytes", message: "inject a seeded Rng" },
    { object: "crypto", property: "getRandomValues", message: "inject a seeded Rng" },
  ],
  "no-restricted-globals": [
    "error",
    { name: "setTimeout", message: "timers belong in adapters" },
    { name: "setInterval", message: "timers belong in adapters" },
    { name: "setImmediate", message: "timers belong in adapters" },
  ],
};

export default tseslint.config(
  { ignores: ["**/dist/**", "**/node_modules/**", "guests/**", "coverage/**", ".reports/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-constant-condition": ["error", { checkLoops: false }],
      "no-labels": "off",
      "eqeqeq": ["error", "always"],
    },
  },
  {
    files: ["packages/*/src/**/*.ts"],
    ignores: ["packages/*/src/adapters/**"],
    rules: noAmbientTimeOrRandomness,
  },
);
