// The bundle is src/ as it is; swap in a bundler (Vite, esbuild) when the page grows.
import { cpSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
cpSync("src", "dist", { recursive: true });
