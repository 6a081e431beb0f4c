import { renderRecommendations, renderUnavailable } from "./render.js";

// config.json is written by the platform when it deploys this bundle to an environment: the same
// bundle serves every environment, each calling its own recommendations-api.
async function main() {
  const app = document.getElementById("app");
  const config = await (await fetch("./config.json")).json();
  const api = config.upstreams["recommendations-api"];
  const customer = new URLSearchParams(window.location.search).get("customer") || "c-1001";
  try {
    const [health, recommendations] = await Promise.all([
      fetch(`${api}/health`).then((r) => r.json()),
      fetch(`${api}/recommendations/${encodeURIComponent(customer)}?limit=3`).then((r) => r.json()),
    ]);
    app.innerHTML = renderRecommendations(health, recommendations);
  } catch (error) {
    app.innerHTML = renderUnavailable(error.message);
    throw error;
  }
}

main();
