/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The build goes into the Python package (coordinator/dashboard_dist), which the coordinator serves
// on its dashboard port, same origin as /ws and /api. `vite dev` proxies both to a running coordinator
// (XYLEN_DASHBOARD_ORIGIN, default http://127.0.0.1:8765).
const coordinator = process.env.XYLEN_DASHBOARD_ORIGIN ?? "http://127.0.0.1:8765";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../coordinator/dashboard_dist",
    emptyOutDir: true,
    sourcemap: false,
    // One bundle (about 175 kB gzipped, most of it Recharts); the goal is at most 250 kB.
    chunkSizeWarningLimit: 900,
  },
  server: {
    proxy: {
      "/api": coordinator,
      "/ws": { target: coordinator.replace(/^http/, "ws"), ws: true },
    },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
