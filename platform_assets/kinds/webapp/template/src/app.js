// config.json is written by the platform per environment: its name and its upstreams' addresses.
export function greeting(config) {
  return `Hello from ${config.environment}`;
}

async function main() {
  const config = await (await fetch("./config.json")).json();
  document.getElementById("app").innerHTML = `<h1 id="environment">${greeting(config)}</h1>`;
}

if (typeof document !== "undefined") main();
