import assert from "node:assert/strict";
import { test } from "node:test";

import { renderRecommendations, renderUnavailable } from "../src/render.js";

test("lists each recommendation and says where it came from", () => {
  const html = renderRecommendations(
    { version: "abc123", environment: "staging" },
    { items: [{ product_id: "p1", name: "Tea", score: 0.5 }, { product_id: "p2", name: "Cups", score: 0.25 }] },
  );
  assert.match(html, /<li data-product="p1">Tea <small>0.50<\/small><\/li><li data-product="p2">/);
  assert.match(html, /recommendations-api abc123 in staging/);
});

test("escapes what the API returns", () => {
  const html = renderRecommendations({ version: "1", environment: "prod" },
    { items: [{ product_id: "x", name: "<script>", score: 1 }] });
  assert.ok(!html.includes("<script>"));
  assert.match(renderUnavailable("<b>"), /&lt;b&gt;/);
});
