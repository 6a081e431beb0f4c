import { defineConfig } from "vite";

// Relative asset paths: the platform serves the bundle under a path of its own per environment.
export default defineConfig({ base: "./", build: { outDir: "dist", emptyOutDir: true } });
