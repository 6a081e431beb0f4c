// Pure rendering, so `node --test` covers it without a browser.

const escape = (text) =>
  String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export function renderRecommendations(health, recommendations) {
  const items = recommendations.items
    .map((item) => `<li data-product="${escape(item.product_id)}">${escape(item.name)} <small>${item.score.toFixed(2)}</small></li>`)
    .join("");
  return `<h1>Picked for you</h1>
<ol id="recommendations">${items}</ol>
<footer id="source">recommendations-api ${escape(health.version)} in ${escape(health.environment)}</footer>`;
}

export function renderUnavailable(reason) {
  return `<h1>Picked for you</h1><p id="unavailable">Recommendations are unavailable: ${escape(reason)}</p>`;
}
