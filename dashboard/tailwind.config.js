/** @type {import('tailwindcss').Config} */
export default {
  content: ["./index.html", "./src/**/*.{ts,tsx}"],
  theme: {
    extend: {
      colors: {
        // The Xylen accents: a gradient from blood to crimson. Text on them is white (contrast ≥ 9:1).
        xylen: { 900: "#5C0000", 700: "#8B0000" },
        panel: "#0b0b0b",
        edge: "#2a2a2a",
      },
      fontFamily: {
        mono: ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
      },
    },
  },
  plugins: [],
};
