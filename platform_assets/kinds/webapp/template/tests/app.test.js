import assert from "node:assert/strict";
import { test } from "node:test";

import { greeting } from "../src/app.js";

test("greets from the environment it is served in", () => {
  assert.equal(greeting({ environment: "staging", upstreams: {} }), "Hello from staging");
});
